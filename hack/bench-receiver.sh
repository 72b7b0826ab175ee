#!/usr/bin/env bash
# Measures the real receiver binary under load against two baselines, in one run on this machine:
#   1. the receiver (HMAC verify, strict validation, forwarding) to a sink,
#   2. a bare net/http handler answering 200 (the sink itself),
#   3. an httputil.ReverseProxy forwarding to the same sink,
#   4. the receiver publishing to NATS JetStream (an embedded nats-server with a file-backed
#      stream, hack/bench/natsjs): every 200 means the stream acknowledged the event.
# Each request carries one event, so requests/s is events/s. Everything listens on 127.0.0.1. The load generator signs every request and sends a fresh
# messageId each time.
#
# Env: DURATION (default 10s), CONCURRENCY (default 32), BASE_PORT (default 18081).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-32}
BASE_PORT=${BASE_PORT:-18081}
sink_port=$BASE_PORT proxy_port=$((BASE_PORT + 1)) receiver_port=$((BASE_PORT + 2)) metrics_port=$((BASE_PORT + 3))
nats_port=$((BASE_PORT + 4)) nats_receiver_port=$((BASE_PORT + 5)) nats_metrics_port=$((BASE_PORT + 6))

tmp=$(mktemp -d)
pids=() nats_pid=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  # NATS goes last, so the receiver does not log a disconnect on its way out.
  [[ -z "$nats_pid" ]] || kill "$nats_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "building..." >&2
go build -o "$tmp/receiver" ./cmd/receiver
go build -o "$tmp/sink" ./hack/bench/sink
go build -o "$tmp/load" ./hack/bench/load
go build -o "$tmp/natsjs" ./hack/bench/natsjs

printf 'bench-secret\n' >"$tmp/hmac"
cat >"$tmp/config.json" <<JSON
{
  "source": "bench/receiver",
  "port": $receiver_port,
  "metricsPort": $metrics_port,
  "authentication": {"mode": "HMAC", "secretFiles": ["$tmp/hmac"]},
  "validation": "Strict",
  "limits": {},
  "delivery": {},
  "targets": [{"name": "sink", "http": {"url": "http://127.0.0.1:$sink_port/ingest"}}]
}
JSON

cat >"$tmp/config-nats.json" <<JSON
{
  "source": "bench/receiver-nats",
  "port": $nats_receiver_port,
  "metricsPort": $nats_metrics_port,
  "authentication": {"mode": "HMAC", "secretFiles": ["$tmp/hmac"]},
  "validation": "Strict",
  "limits": {},
  "delivery": {},
  "targets": [{"name": "jetstream", "nats": {"urls": ["nats://127.0.0.1:$nats_port"], "subject": "segment.{type}", "stream": "SEGMENT"}}]
}
JSON

"$tmp/sink" -addr "127.0.0.1:$sink_port" & pids+=($!)
"$tmp/sink" -addr "127.0.0.1:$proxy_port" -upstream "http://127.0.0.1:$sink_port" & pids+=($!)
"$tmp/receiver" --config "$tmp/config.json" --addr "127.0.0.1:$receiver_port" \
  --metrics-addr "127.0.0.1:$metrics_port" --log-level warn --drain-delay 0s & pids+=($!)
mkdir "$tmp/jetstream"
"$tmp/natsjs" -addr "127.0.0.1:$nats_port" -store "$tmp/jetstream" & nats_pid=$!
"$tmp/receiver" --config "$tmp/config-nats.json" --addr "127.0.0.1:$nats_receiver_port" \
  --metrics-addr "127.0.0.1:$nats_metrics_port" --log-level warn --drain-delay 0s & pids+=($!)
for _ in $(seq 100); do "$tmp/natsjs" -count -addr "127.0.0.1:$nats_port" >/dev/null 2>&1 && break; sleep 0.1; done
for url in "http://127.0.0.1:$nats_receiver_port/readyz" "http://127.0.0.1:$sink_port/" "http://127.0.0.1:$proxy_port/" "http://127.0.0.1:$receiver_port/readyz"; do
  "$tmp/load" -wait-for "$url"
done

echo "$(nproc) cores, concurrency $CONCURRENCY, $DURATION per scenario"
"$tmp/load" -header
run() { "$tmp/load" -label "$1" -url "$2" -concurrency "$CONCURRENCY" -duration "$DURATION"; }
run "receiver -> sink" "http://127.0.0.1:$receiver_port/webhook"
run "bare net/http 200" "http://127.0.0.1:$sink_port/webhook"
run "httputil.ReverseProxy -> sink" "http://127.0.0.1:$proxy_port/webhook"
run "receiver -> NATS JetStream" "http://127.0.0.1:$nats_receiver_port/webhook"
echo "JetStream stream SEGMENT holds $("$tmp/natsjs" -count -addr "127.0.0.1:$nats_port") messages (one per event answered 200)"
