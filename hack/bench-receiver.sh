#!/usr/bin/env bash
# Measures the real receiver binary under load, in one run on this machine, everything on 127.0.0.1.
#
# Single events (one signed track event per request, ~940 bytes, CONCURRENCY connections), in
# rotating order, ROUNDS times, after a warm-up each:
#   - the receiver (HMAC verify, strict validation, forwarding over HTTP) to a sink,
#   - a naive forwarder (HMAC verify, encoding/json into a map, http.Client; hack/bench/naive),
#   - httputil.ReverseProxy to the same sink, and the bare sink (net/http answering 200),
#   - the receiver publishing to NATS JetStream (embedded nats-server, file-backed stream).
# Batches (Segment-shaped arrays signed over element 0, BATCH_CONCURRENCY at once) of 100, 1000
# and 4000 events: HTTP to a sink answering at once and one 20 ms away, one request per event
# (default concurrency) and with `batch`; Kafka (kfake, franz-go's in-process broker); NATS.
# Rows show the CPU seconds and peak RSS (VmHWM, reset before each row) of the process under test
# (the receiver, the naive forwarder, the proxy or the bare sink; not the sink behind them).
#
# Last, one 4000-event batch at a time to the 20 ms sink, with and without `batch`: the latency
# Segment sees for its largest batch. Receiver logs (warnings) go to a file, summarized at the end.
#
# Env: DURATION (10s), BATCH_DURATION (5s), WARMUP (2s), ROUNDS (3), CONCURRENCY (32),
#      BATCH_CONCURRENCY (4), BASE_PORT (18081), ONLY (single or batch: run only that part),
#      BASE_REF (a git ref: the receiver built from it joins the single-event rotation, so a change
#      is measured against its base in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
BATCH_DURATION=${BATCH_DURATION:-5s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
CONCURRENCY=${CONCURRENCY:-32}
BATCH_CONCURRENCY=${BATCH_CONCURRENCY:-4}
BASE_PORT=${BASE_PORT:-18081}
port() { echo $((BASE_PORT + $1)); }
sink_port=$(port 0) slow_sink_port=$(port 1) proxy_port=$(port 2) naive_port=$(port 3)
nats_port=$(port 4) kafka_port=$(port 5)

tmp=$(mktemp -d)
pids=() broker_pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  # Brokers go last, so the receivers do not log disconnects on their way out.
  for pid in "${broker_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "building..." >&2
for cmd in receiver; do go build -o "$tmp/$cmd" ./cmd/$cmd; done
if [[ -n ${BASE_REF:-} ]]; then
  git worktree add -q --detach "$tmp/base-src" "$BASE_REF"
  (cd "$tmp/base-src" && go build -o "$tmp/receiver-base" ./cmd/receiver)
  git worktree remove --force "$tmp/base-src"
fi
for cmd in sink load natsjs naive kafka; do go build -o "$tmp/$cmd" ./hack/bench/$cmd; done
printf 'bench-secret\n' >"$tmp/hmac"

# receiver NAME INDEX TARGET-JSON [MORE-CONFIG]: starts a receiver on ports 20+2*INDEX and
# 21+2*INDEX; sets receiver_url[NAME] and receiver_pid[NAME]. MORE-CONFIG adds config members.
# GOMEMLIMIT and GOGC are what the operator's receiver Deployment sets by default (256Mi limit).
declare -A receiver_url receiver_pid
receiver() {
  local name=$1 p m
  p=$(port $((20 + 2 * $2))) m=$(port $((21 + 2 * $2)))
  cat >"$tmp/$name.json" <<JSON
{"source": "bench/$name", "port": $p, "metricsPort": $m,
 "authentication": {"mode": "HMAC", "secretFiles": ["$tmp/hmac"]},
 "validation": "Strict", "limits": {}, "delivery": {}, "targets": [$3]${4:-}}
JSON
  GOMEMLIMIT=256MiB GOGC=200 "${RECEIVER_BIN:-$tmp/receiver}" --config "$tmp/$name.json" --addr "127.0.0.1:$p" --metrics-addr "127.0.0.1:$m" \
    --log-level warn --drain-delay 0s 2>>"$tmp/receivers.log" &
  receiver_pid[$name]=$! receiver_url[$name]="http://127.0.0.1:$p/webhook"
  pids+=($!)
}

"$tmp/sink" -addr "127.0.0.1:$sink_port" & pids+=($!) sink_pid=$!
"$tmp/sink" -addr "127.0.0.1:$slow_sink_port" -delay 20ms & pids+=($!)
"$tmp/sink" -addr "127.0.0.1:$proxy_port" -upstream "http://127.0.0.1:$sink_port" & pids+=($!) proxy_pid=$!
"$tmp/naive" -addr "127.0.0.1:$naive_port" -upstream "http://127.0.0.1:$sink_port/ingest" & pids+=($!) naive_pid=$!
mkdir "$tmp/jetstream"
"$tmp/natsjs" -addr "127.0.0.1:$nats_port" -store "$tmp/jetstream" & broker_pids+=($!)
"$tmp/kafka" -port "$kafka_port" -topic segment-events & broker_pids+=($!)
for _ in $(seq 100); do "$tmp/natsjs" -count -addr "127.0.0.1:$nats_port" >/dev/null 2>&1 && break; sleep 0.1; done

http_target() { echo "{\"name\": \"sink\", \"http\": {\"url\": \"http://127.0.0.1:$1/ingest\"$2}}"; }
receiver http 0 "$(http_target "$sink_port" "")"
receiver http-batch 1 "$(http_target "$sink_port" ', "batch": {}')"
receiver http-20ms 2 "$(http_target "$slow_sink_port" "")"
receiver http-20ms-batch 3 "$(http_target "$slow_sink_port" ', "batch": {}')"
receiver nats 4 '{"name": "jetstream", "nats": {"urls": ["nats://127.0.0.1:'"$nats_port"'"], "subject": "segment.{type}", "stream": "SEGMENT"}}'
receiver kafka 5 '{"name": "kafka", "kafka": {"brokers": ["127.0.0.1:'"$kafka_port"'"], "topic": "segment-events"}}'
# The same receiver with a 50-event tracking plan (hack/bench/trackingplan-50.json): every event
# is checked (properties and context) and follows the plan, so all are forwarded.
receiver http-plan 6 "$(http_target "$sink_port" "")" \
  ", \"trackingPlan\": {\"files\": [\"$PWD/hack/bench/trackingplan-50.json\"], \"onViolation\": \"DeadLetter\"},
 \"deadLetter\": {\"http\": {\"url\": \"http://127.0.0.1:$sink_port/dead-letters\"}}"
[[ -n ${BASE_REF:-} ]] && RECEIVER_BIN="$tmp/receiver-base" receiver http-base 7 "$(http_target "$sink_port" "")"
for url in "http://127.0.0.1:$sink_port/" "http://127.0.0.1:$slow_sink_port/" "http://127.0.0.1:$proxy_port/" "http://127.0.0.1:$naive_port/"; do
  "$tmp/load" -wait-for "$url"
done
for name in "${!receiver_url[@]}"; do "$tmp/load" -wait-for "${receiver_url[$name]%/webhook}/readyz"; done

others=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 5 {printf "%s(%s%%) ", $2, $1}' | head -c 300)
echo "$(nproc) cores; busiest processes at start: ${others:-none above 5%}"
echo
echo "Single events: concurrency $CONCURRENCY, $DURATION per row after a $WARMUP warm-up, $ROUNDS rounds in rotating order"
"$tmp/load" -header
contenders=(receiver naive proxy bare nats)
[[ -n ${BASE_REF:-} ]] && contenders=(receiver base naive proxy bare nats)
single() {
  local url pid=0
  case $1 in
    receiver) url=${receiver_url[http]} pid=${receiver_pid[http]} ;;
    naive) url="http://127.0.0.1:$naive_port/webhook" pid=$naive_pid ;;
    proxy) url="http://127.0.0.1:$proxy_port/webhook" pid=$proxy_pid ;;
    bare) url="http://127.0.0.1:$sink_port/webhook" pid=$sink_pid ;;
    nats) url=${receiver_url[nats]} pid=${receiver_pid[nats]} ;;
    base) url=${receiver_url[http-base]} pid=${receiver_pid[http-base]} ;;
  esac
  local -A labels=([receiver]="receiver -> sink" [naive]="naive forwarder -> sink" [proxy]="httputil.ReverseProxy -> sink" \
    [bare]="bare net/http 200" [nats]="receiver -> NATS JetStream" [base]="receiver ${BASE_REF:-} -> sink")
  "$tmp/load" -label "${labels[$1]}" -url "$url" -pid "$pid" -concurrency "$CONCURRENCY" -duration "$DURATION" -warmup "$WARMUP" |
    tee -a "$tmp/single.txt"
}
if [[ ${ONLY:-single} == single ]]; then
  for round in $(seq 0 $((ROUNDS - 1))); do
    for i in "${!contenders[@]}"; do
      single "${contenders[$(((i + round) % ${#contenders[@]}))]}"
    done
  done
  echo
  echo "Median over the $ROUNDS rounds (req/s, p99 in ms), and the receiver against the naive forwarder:"
  awk '
    function ms(v) { if (v ~ /µs$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " "); for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { f = split($0, x, " "); n = f - 8; label = x[1]; for (i = 2; i < n; i++) label = label " " x[i]
      rps[label] = rps[label] " " x[n + 1]; p99[label] = p99[label] " " ms(x[n + 4]); if (!(label in seen)) { seen[label] = 1; order[++k] = label } }
    END {
      for (i = 1; i <= k; i++) { l = order[i]; m[l] = median(rps[l]); printf "  %-34s %8.0f req/s  p99 %6.2f ms\n", l, m[l], median(p99[l]) }
      if (m["naive forwarder -> sink"] > 0) printf "  receiver / naive forwarder: %.0f%%\n", 100 * m["receiver -> sink"] / m["naive forwarder -> sink"]
    }' "$tmp/single.txt"
fi
if [[ ${ONLY:-plan} == plan ]]; then
  echo
  echo "Tracking plan: the receiver with and without a 50-event plan, single events as above, $ROUNDS rounds in rotating order"
  "$tmp/load" -header
  for round in $(seq 0 $((ROUNDS - 1))); do
    for name in $([[ $((round % 2)) == 0 ]] && echo "http http-plan" || echo "http-plan http"); do
      "$tmp/load" -label "receiver -> sink${name#http}" -url "${receiver_url[$name]}" -pid "${receiver_pid[$name]}" \
        -concurrency "$CONCURRENCY" -duration "$DURATION" -warmup "$WARMUP" | tee -a "$tmp/plan.txt"
    done
  done
  awk '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " "); for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    { n = split($0, x, " "); label = x[3]; rps[label] = rps[label] " " x[n - 7]; req[label] += x[n - 8]; cpu[label] += x[n - 1] }
    END { p = median(rps["sink-plan"]); b = median(rps["sink"]); printf "  median req/s: %.0f with the plan, %.0f without: %.0f%%\n", p, b, 100 * p / b
      printf "  receiver CPU per request: %.0f µs with the plan, %.0f µs without\n", 1e6 * cpu["sink-plan"] / req["sink-plan"], 1e6 * cpu["sink"] / req["sink"] }' "$tmp/plan.txt"
fi
if [[ ${ONLY:-batch} != batch ]]; then exit 0; fi

echo
echo "Batches: concurrency $BATCH_CONCURRENCY, $BATCH_DURATION per row after a $WARMUP warm-up"
"$tmp/load" -header
for events in 100 1000 4000; do
  for name in http http-batch http-20ms http-20ms-batch kafka nats; do
    "$tmp/load" -label "$events-event batch -> receiver $name" -url "${receiver_url[$name]}" -pid "${receiver_pid[$name]}" \
      -events "$events" -concurrency "$BATCH_CONCURRENCY" -duration "$BATCH_DURATION" -warmup "$WARMUP"
  done
done
echo
echo "Segment's largest batch, one at a time, to the sink 20 ms away ($BATCH_DURATION per row)"
"$tmp/load" -header
for name in http-20ms-batch http-20ms; do
  "$tmp/load" -label "4000 events, alone -> receiver $name" -url "${receiver_url[$name]}" -pid "${receiver_pid[$name]}" \
    -events 4000 -concurrency 1 -duration "$BATCH_DURATION" -warmup "$WARMUP"
done
echo
echo "receiver warnings: $(grep -c '"level":"WARN"' "$tmp/receivers.log" || true) lines, $(grep -c '"code":503' "$tmp/receivers.log" || true) answers 503"
echo "JetStream stream SEGMENT holds $("$tmp/natsjs" -count -addr "127.0.0.1:$nats_port") messages"
