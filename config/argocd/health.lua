-- Argo CD health check for segment.webhook-operator.io/SegmentWebhook, by kstatus rules:
-- spec.suspend is Suspended; a status older than the spec is Progressing; Stalled=True is
-- Degraded; Reconciling=True is Progressing; Ready=True is Healthy. Ready=False is Progressing
-- while the receiver comes up, and Degraded for the reasons that need a person (a missing Secret,
-- a host another SegmentWebhook owns), which operator releases without the Stalled condition
-- report only there.
local needsAction = {
  SecretNotFound = true,
  SecretKeyNotFound = true,
  HostConflict = true,
  HostNotAllowed = true,
}

local function condition(conditions, type)
  for _, c in ipairs(conditions or {}) do
    if c.type == type then
      return c
    end
  end
  return nil
end

-- Suspension comes first: it is the user's own spec, and nothing progresses while it holds.
if obj.spec ~= nil and obj.spec.suspend == true then
  return { status = "Suspended", message = "Reconciliation is suspended (spec.suspend)" }
end
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation or 0
if obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local conditions = obj.status.conditions
local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  return { status = "Degraded", message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "") }
end
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  return { status = "Progressing", message = (reconciling.reason or "Reconciling") .. ": " .. (reconciling.message or "") }
end
local ready = condition(conditions, "Ready")
if ready == nil or (ready.observedGeneration ~= nil and ready.observedGeneration < generation) then
  hs.message = "Waiting for the Ready condition"
  return hs
end
local message = (ready.reason or "") .. ": " .. (ready.message or "")
if ready.status == "True" then
  return { status = "Healthy", message = ready.message or "" }
end
if ready.status == "False" and needsAction[ready.reason] then
  return { status = "Degraded", message = message }
end
return { status = "Progressing", message = message }
