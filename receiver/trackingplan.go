package receiver

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/trackingplan"
)

// violationAttribute marks an event forwarded with violations (onViolation Forward, or
// OmitProperties when omitting could not repair it), as "pointer keyword" pairs
// (trackingplan.Summary). Targets carry it as ce-planviolation or their *HeaderPlanViolation.
const violationAttribute = "planviolation"

// maxViolationsInSummary bounds the attribute, so a header stays short.
const maxViolationsInSummary = 10

// planEnforcer applies a compiled tracking plan to the events of a request before routing.
type planEnforcer struct {
	plan        *trackingplan.Plan
	unplanned   string // config.UnplannedAllow or config.UnplannedBlock
	onViolation string // config.Violation*
	metrics     *metrics
	log         *slog.Logger
}

// newPlanEnforcer compiles the plan files (already read by the reload); nil without a plan.
func newPlanEnforcer(tp *config.TrackingPlan, files map[string][]byte, m *metrics, log *slog.Logger) (*planEnforcer, error) {
	if tp == nil {
		return nil, nil
	}
	docs := make([]trackingplan.Document, 0, len(tp.Files))
	for _, path := range tp.Files {
		data, ok := files[path]
		if !ok {
			return nil, fmt.Errorf("tracking plan file %s was not read", path)
		}
		docs = append(docs, trackingplan.Document{Name: filepath.Base(path), Data: data})
	}
	plan, err := trackingplan.Compile(docs)
	if err != nil {
		return nil, err
	}
	return &planEnforcer{plan: plan, unplanned: tp.UnplannedEvents, onViolation: tp.OnViolation, metrics: m, log: log}, nil
}

// enforce checks each event against the plan, using the members the decoder located. It leaves
// in d.events the events to route (some marked, or with properties omitted), adds to d.invalid
// those to dead-letter, and returns how many it blocked and the bytes of the events it rewrote
// (omitted properties), which no longer share the body. Its metrics go to counts. A nil enforcer
// passes every event.
func (e *planEnforcer) enforce(d *decodedBody, counts tally) (blocked int, rewritten int64) {
	if e == nil {
		return 0, 0
	}
	forward := d.events[:0] // filtered in place
	for _, ev := range d.events {
		r := e.plan.Check(trackingplan.Event{Type: ev.Type, Name: ev.Name,
			Properties: ev.properties, Traits: ev.traits, Context: ev.context})
		if r.Unplanned {
			counts.inc(e.metrics.planUnplanned)
			if e.unplanned == config.UnplannedBlock {
				blocked++
				continue
			}
		}
		if len(r.Violations) == 0 {
			forward = append(forward, ev)
			continue
		}
		counts.inc(e.metrics.planViolations.WithLabelValues(planEventLabel(&ev, r.Unplanned), e.onViolation))
		// Messages may quote the event's values: debug logs only.
		e.log.Debug("tracking plan violation", "index", ev.Index, "messageId", ev.MessageID, "type", ev.Type,
			"event", ev.Name, "action", e.onViolation, "violations", r.Violations)
		switch e.onViolation {
		case config.ViolationBlock:
			blocked++
		case config.ViolationDeadLetter:
			d.invalid = append(d.invalid, invalidEvent{raw: ev.Raw, id: ev.MessageID, violations: r.Violations, err: &validationError{
				Status: http.StatusBadRequest, Index: ev.Index, Field: r.Violations[0].Pointer, Reason: describe(r.Violations, r.Total)}})
		case config.ViolationOmitProperties:
			out := omit(ev, &r)
			if len(out.Raw) != len(ev.Raw) { // an omitted member always shortens the event
				rewritten += int64(len(out.Raw))
			}
			forward = append(forward, out)
		default: // config.ViolationForward
			forward = append(forward, markViolations(ev, r.Violations, r.Total))
		}
	}
	d.events = forward
	return blocked, rewritten
}

// memory bounds what checking the events holds at once: they are checked one at a time, each
// member's check holding at most trackingplan.CheckMemoryFactor per byte of it (members over
// trackingplan.MaxCheckedBytes are not checked). 0 without a plan.
func (e *planEnforcer) memory(events []Event) int64 {
	if e == nil {
		return 0
	}
	largest := 0
	for i := range events {
		ev := &events[i]
		for _, m := range [...][]byte{ev.properties, ev.traits, ev.context} {
			if n := len(m); n > largest && n <= trackingplan.MaxCheckedBytes {
				largest = n
			}
		}
	}
	return int64(largest) * trackingplan.CheckMemoryFactor
}

// omit drops the members the plan refused, in one pass; what omitting cannot repair (a missing
// required property, say) is marked as with Forward.
func omit(ev Event, r *trackingplan.Result) Event {
	paths, rest, unrepairable := r.Omissions()
	var drop *pathNode
	for _, path := range paths {
		drop = drop.add(path[:])
	}
	if drop != nil {
		out, changed, err := dropPaths(ev.Raw, drop)
		if err != nil { // the decoder validated the event: cannot happen
			return markViolations(ev, r.Violations, r.Total)
		}
		if changed {
			ev.Raw = out
		}
	}
	if unrepairable > 0 {
		return markViolations(ev, rest, unrepairable)
	}
	return ev
}

// markViolations sets the violation attribute: those listed, and how many there are in all.
func markViolations(ev Event, violations []trackingplan.Violation, total int) Event {
	attrs := make(map[string]string, len(ev.Attributes)+1)
	for k, v := range ev.Attributes {
		attrs[k] = v
	}
	attrs[violationAttribute] = trackingplan.Summary(violations, total, maxViolationsInSummary)
	ev.Attributes = attrs
	return ev
}

// describe is a dead letter's error: every violation listed with its message, and how many more.
func describe(violations []trackingplan.Violation, total int) string {
	parts := make([]string, len(violations), len(violations)+1)
	for i, v := range violations {
		parts[i] = fmt.Sprintf("%s: %s: %s", v.Pointer, v.Keyword, v.Message)
	}
	if total > len(violations) {
		parts = append(parts, fmt.Sprintf("and %d more", total-len(violations)))
	}
	return strings.Join(parts, "; ")
}

// planEventLabel bounds the metric's event label: a planned track event's name (the plan bounds
// how many), "unplanned" for other track events, else the event type's label.
func planEventLabel(ev *Event, unplanned bool) string {
	switch {
	case ev.Type == "track" && unplanned:
		return "unplanned"
	case ev.Type == "track":
		return ev.Name
	}
	return typeLabel(ev.Type)
}
