#!/usr/bin/env bash
# make demo: builds the demo program (showing progress: the first build compiles the operator and
# client-go, a few minutes on two cores) and runs it. The demo builds bin/receiver itself and
# needs KUBEBUILDER_ASSETS (the Makefile's envtest target provides it).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
echo "==> building the demo program (bin/demo)"
start=$SECONDS
go build -o bin/demo ./hack/demo &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' INT TERM
while kill -0 "$pid" 2>/dev/null; do
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 1
    kill -0 "$pid" 2>/dev/null || break 2
  done
  echo "    ... still compiling ($((SECONDS - start))s)"
done
wait "$pid"
trap - INT TERM
echo "    built in $((SECONDS - start))s"
exec bin/demo "$@"
