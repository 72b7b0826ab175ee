#!/usr/bin/env bash
# Copies the generated manifests the Helm chart shares with kustomize into the chart, so each has
# one source of truth (controller-gen markers) and no hand-made copy:
#   config/crd/bases/*.yaml  -> charts/segment-webhook-operator/crds/
#   config/rbac/role.yaml    -> charts/segment-webhook-operator/files/manager-role.yaml
#                               (templates/rbac.yaml reads its rules with .Files.Get)
# 'make manifests' runs it; test/manifests fails when the chart has drifted.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=charts/segment-webhook-operator
mkdir -p "$chart/crds" "$chart/files"
# Remove CRDs that no longer exist in config/crd/bases.
for f in "$chart"/crds/*.yaml; do
  [[ -e "$f" ]] || continue
  [[ -e "config/crd/bases/$(basename "$f")" ]] || rm -f "$f"
done
for f in config/crd/bases/*.yaml; do
  cmp -s "$f" "$chart/crds/$(basename "$f")" || cp "$f" "$chart/crds/"
done
cmp -s config/rbac/role.yaml "$chart/files/manager-role.yaml" || cp config/rbac/role.yaml "$chart/files/manager-role.yaml"
