#!/usr/bin/env bash
# Operator scale benchmark on envtest (a real kube-apiserver and etcd, built from the Go module
# proxy by hack/envtest-assets.sh): creates 10,000 unrelated Secrets, runs bin/manager as its own
# process, creates N SegmentWebhooks with their Secrets, measures the time until all have their
# children and an up-to-date status, counts API writes and Secret reads during a no-op resync
# window (both must be 0), reads the manager's RSS from /proc, then restarts the manager and counts
# what the new one reads and writes (writes must be 0). See hack/bench/operator/main.go.
#
# Env: N (default 100; 1000 for the large run), SYNC_PERIOD (default 10s), extra flags in ARGS
# (such as -unrelated-secrets=0 or -max-concurrent-reconciles=8).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
SYNC_PERIOD=${SYNC_PERIOD:-10s}
if [ -z "${KUBEBUILDER_ASSETS:-}" ]; then
  KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
  export KUBEBUILDER_ASSETS
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -o bin/manager ./cmd/manager
go build -o "$tmp/bench-operator" ./hack/bench/operator
# shellcheck disable=SC2086
"$tmp/bench-operator" -n "$N" -sync-period "$SYNC_PERIOD" -manager bin/manager ${ARGS:-}
