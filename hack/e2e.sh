#!/usr/bin/env bash
# make e2e (hack/e2e.sh test) and make cluster (hack/e2e.sh cluster): gets what a real node
# needs, printing one line per step and a timing table, then runs the real-node suite
# (test/e2e) or starts the cluster and leaves it running.
#
#   1. preflight: root and cgroups, or it says what is missing and fails;
#   2. Debian packages: containerd, runc, CNI plugins, iptables (hack/node-packages.sh);
#   3. in parallel: the envtest kube-apiserver and etcd (hack/envtest-assets.sh), the node
#      binaries (hack/node-assets.sh), the images (make images) and helm; cached after the first run;
#   4. the suite, or the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}
make_=(make --no-print-directory)
timings=()
t0=$SECONDS
log() { printf '[e2e] %s\n' "$*" >&2; }
timed() {
  local name=$1 start=$SECONDS; shift
  log "$name ..."
  "$@"
  timings+=("$(printf '%-52s %4ds' "$name" $((SECONDS - start)))")
  log "$name: done in $((SECONDS - start))s"
}
table() {
  log "timings ($mode), wall $((SECONDS - t0))s:"
  printf '  %s\n' "${timings[@]}" >&2
}
trap table EXIT

preflight() {
  local why=()
  [[ $(id -u) == 0 ]] || why+=("root (containerd, the kubelet and the CNI plugins need it)")
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || why+=("cgroups under /sys/fs/cgroup")
  if ((${#why[@]})); then
    log "cannot run a real node here: missing ${why[*]}"
    exit 1
  fi
}
timed "preflight (root, cgroups)" preflight
timed "Debian packages (containerd, runc, CNI, iptables)" hack/node-packages.sh

# The builds of step 3 run at once; each prints its own progress. A cold node build says how long
# it takes before it starts.
deps() {
  local pids=() names=(envtest node-assets images helm) i failed=0
  # The node runs this machine's architecture only: the images are built for it alone.
  for i in "${names[@]}"; do "${make_[@]}" "$i" IMAGE_ARCH="$(go env GOARCH)" > >(sed "s/^/[$i] /" >&2) 2>&1 & pids+=($!); done
  for i in "${!pids[@]}"; do wait "${pids[$i]}" || { log "${names[$i]} failed"; failed=1; }; done
  return $failed
}
timed "envtest, node binaries, images, helm (cached after the first run)" deps

envtest=$("${make_[@]}" -s print-envtest-assets)
node=$("${make_[@]}" -s print-node-assets)
img=$("${make_[@]}" -s print-IMG)
receiver=$("${make_[@]}" -s print-RECEIVER_IMG)
pause=$("${make_[@]}" -s print-PAUSE_IMG)
images=$("${make_[@]}" -s print-IMAGES_DIR)
case $mode in
  test)
    e2e_dir=$("${make_[@]}" -s print-E2E_DIR)
    run_suite() {
      KUBEBUILDER_ASSETS=$envtest NODE_ASSETS=$node IMAGES_DIR=$(realpath "$images") HELM=$(realpath bin/helm) \
        IMG=$img RECEIVER_IMG=$receiver PAUSE_IMG=$pause E2E_DIR=$e2e_dir \
        go test -tags e2e ./test/e2e/ -count=1 -timeout 40m -v -ginkgo.v
    }
    timed "the real-node suite (go test -tags e2e ./test/e2e)" run_suite
    ;;
  cluster)
    dir=$("${make_[@]}" -s print-CLUSTER_DIR)
    timed "the cluster, with the operator installed" go run ./hack/cluster -dir "$dir" \
      -envtest-assets "$envtest" -node-assets "$node" -images "$images" -helm bin/helm \
      -img "$img" -receiver-img "$receiver" -pause-img "$pause" up
    ;;
  *) echo "usage: hack/e2e.sh test|cluster" >&2; exit 2 ;;
esac
