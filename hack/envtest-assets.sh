#!/usr/bin/env bash
# Puts the envtest control plane (kube-apiserver + etcd) into setup-envtest's store and prints its
# directory (KUBEBUILDER_ASSETS). Fastest path first:
#   1. cached: the store already has them (instant);
#   2. download: setup-envtest, as in every kubebuilder project (seconds where its site is reachable);
#   3. source build: where no download site is reachable, both are built from the Go module proxy,
#      in parallel (minutes, CPU-bound, once).
# All three use the same store, so a later run (and setup-envtest itself) reuses what one made.
#
# Usage: hack/envtest-assets.sh            prints the asset directory
# Env:   KUBE_VERSION (1.37.2), ETCD_VERSION (3.6.16, what the source build builds), ENVTEST_STORE,
#        SETUP_ENVTEST_VERSION (v0.25.1), ENVTEST_INDEX_TIMEOUT and ENVTEST_DOWNLOAD_TIMEOUT (seconds,
#        20 to read setup-envtest's index, 600 for the download),
#        ENVTEST_INDEX (setup-envtest --index; empty: its default), LOCALBIN (bin/: setup-envtest)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
SETUP_ENVTEST_VERSION=${SETUP_ENVTEST_VERSION:-v0.25.1}
ENVTEST_INDEX_TIMEOUT=${ENVTEST_INDEX_TIMEOUT:-20}
ENVTEST_DOWNLOAD_TIMEOUT=${ENVTEST_DOWNLOAD_TIMEOUT:-600}
LOCALBIN=${LOCALBIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
# Measured on this project's 2-core machines, cold Go build and module caches (see README).
SOURCE_BUILD_ESTIMATE="about 9 min on 2 idle cores, 15-30 min when other builds share them"

case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=$(uname -s | tr A-Z a-z) ;; esac
arch=$(go env GOARCH)
if [[ -z "${ENVTEST_STORE:-}" ]]; then
  if [[ "$os" == darwin ]]; then ENVTEST_STORE="$HOME/Library/Application Support/io.kubebuilder.envtest"
  else ENVTEST_STORE="${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest"; fi
fi
dest="$ENVTEST_STORE/k8s/${KUBE_VERSION}-${os}-${arch}"

log() { printf '[envtest-assets] %s\n' "$*" >&2; }

# kube-apiserver must be the wanted version; any etcd that runs will do (a downloaded store brings
# the etcd its Kubernetes release was tested with, the source build ETCD_VERSION).
apiserver_ok() { [[ -x "$dest/kube-apiserver" ]] && "$dest/kube-apiserver" --version 2>/dev/null | grep -qF "v${KUBE_VERSION}"; }
etcd_ok() { [[ -x "$dest/etcd" ]] && "$dest/etcd" --version >/dev/null 2>&1; }

with_timeout() {
  local secs=$1; shift
  if command -v timeout >/dev/null; then timeout "$secs" "$@"; else "$@"; fi
}

# --- 2. download -------------------------------------------------------------------------------

# setup_envtest installs the pinned setup-envtest into LOCALBIN, named with its version like the
# Makefile's tools, and prints its path.
setup_envtest() {
  local bin="$LOCALBIN/setup-envtest-$SETUP_ENVTEST_VERSION"
  if [[ ! -x "$bin" ]]; then
    log "installing setup-envtest $SETUP_ENVTEST_VERSION (go install; about a minute the first time)"
    local gobin; gobin=$(mktemp -d)
    GOBIN="$gobin" go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@$SETUP_ENVTEST_VERSION" >&2 || { rm -rf "$gobin"; return 1; }
    mkdir -p "$LOCALBIN"
    mv "$gobin/setup-envtest" "$bin"
    rm -rf "$gobin"
  fi
  echo "$bin"
}

# run_setup_envtest runs setup-envtest within a time limit; on failure it says why and returns 1.
run_setup_envtest() {
  local secs=$1 errfile rc=0; shift
  errfile=$(mktemp)
  with_timeout "$secs" "$@" 2>"$errfile" || rc=$?
  if ((rc == 124)); then
    log "download failed: no answer within ${secs}s"
  elif ((rc != 0)); then
    log "download failed: $(tail -n 1 "$errfile")"
  fi
  rm -f "$errfile"
  return $((rc != 0))
}

download() {
  local tool got
  tool=$(setup_envtest) || { log "could not install setup-envtest"; return 1; }
  local common=(--bin-dir "$ENVTEST_STORE" --os "$os" --arch "$arch")
  [[ -n "${ENVTEST_INDEX:-}" ]] && common+=(--index "$ENVTEST_INDEX")
  # Reading the index first tells a site that drops connections from a slow download quickly.
  log "looking for envtest ${KUBE_VERSION} with setup-envtest (timeout ${ENVTEST_INDEX_TIMEOUT}s)"
  run_setup_envtest "$ENVTEST_INDEX_TIMEOUT" "$tool" list "$KUBE_VERSION" "${common[@]}" >/dev/null || return 1
  # --force: setup-envtest takes any existing version directory as installed, even a partial one.
  # It downloads to a temporary file and replaces the directory only once the archive is verified.
  log "downloading kube-apiserver and etcd ${KUBE_VERSION} with setup-envtest (timeout ${ENVTEST_DOWNLOAD_TIMEOUT}s)"
  got=$(run_setup_envtest "$ENVTEST_DOWNLOAD_TIMEOUT" "$tool" use "$KUBE_VERSION" "${common[@]}" --force -p path) || return 1
  if [[ "$got" != "$dest" ]] || ! apiserver_ok || ! etcd_ok; then
    log "download failed: setup-envtest gave '$got', not a working $dest"
    return 1
  fi
}

# --- 3. source build ---------------------------------------------------------------------------

work=""
pids=()
# On an interrupt, the builds stop too: go's compile and link children first, then go itself.
cleanup() {
  local pid
  for pid in ${pids[@]+"${pids[@]}"}; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  if [[ -n "$work" ]]; then rm -rf "$work" "$dest"/.*.new; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each build runs in a throwaway module and ends in `exec go build`, so its pid is the build's.
# Binaries are written next to their final name and renamed into place, so a concurrent reader
# never sees half a file.
build_kube_apiserver() {
  local dir=$1 minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local staging="v0.${KUBE_VERSION#*.}" gomod pkg=k8s.io/component-base/version
  cd "$dir"
  go mod init envtest-kube-apiserver >/dev/null 2>&1
  # k8s.io/kubernetes points its staging modules at ./staging; pin each to its published release.
  gomod=$(go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | while read -r mod; do
    go mod edit -replace "${mod}=${mod}@${staging}"
  done
  go mod edit -require "k8s.io/kubernetes@v${KUBE_VERSION}"
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > tools.go
  go mod tidy >/dev/null
  CGO_ENABLED=0 exec go build -trimpath -o "$dest/.kube-apiserver.new" -ldflags "-s -w \
    -X $pkg.gitVersion=v${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} \
    -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
    k8s.io/kubernetes/cmd/kube-apiserver
}

build_etcd() {
  cd "$1"
  go mod init envtest-etcd >/dev/null 2>&1
  go mod edit -require "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy >/dev/null
  CGO_ENABLED=0 exec go build -trimpath -ldflags "-s -w" -o "$dest/.etcd.new" go.etcd.io/etcd/server/v3
}

source_build() {
  local names=() what="" name i start=$SECONDS failed=0
  if apiserver_ok; then log "reusing kube-apiserver v${KUBE_VERSION} from $dest"
  else names+=(kube-apiserver); what="kube-apiserver v${KUBE_VERSION}"; fi
  if etcd_ok; then log "reusing etcd from $dest"
  else names+=(etcd); what="${what:+$what and }etcd v${ETCD_VERSION}"; fi
  local together=""
  ((${#names[@]} > 1)) && together=", in parallel"
  log "building ${what} from the Go module proxy${together}. Without Go build cache this is CPU-bound:"
  log "${SOURCE_BUILD_ESTIMATE} for kube-apiserver, 1-2 min for etcd. It happens once: later runs reuse $dest."
  mkdir -p "$dest"
  work=$(mktemp -d)
  for name in "${names[@]}"; do
    mkdir -p "$work/$name"
    case $name in
      kube-apiserver) build_kube_apiserver "$work/$name" & ;;
      etcd) build_etcd "$work/$name" & ;;
    esac
    pids+=($!)
  done
  # One progress line every 30 s; the loop notices the end of the builds within a second.
  local tick=0 running
  while :; do
    running=()
    for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && running+=("${names[$i]}"); done
    ((${#running[@]})) || break
    sleep 1
    if (( ++tick % 30 == 0 )); then
      local usually="1-2 min"
      [[ " ${running[*]} " == *" kube-apiserver "* ]] && usually=$SOURCE_BUILD_ESTIMATE
      log "still building ${running[*]}: $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s so far (usually ${usually} cold)"
    fi
  done
  for i in "${!pids[@]}"; do
    name=${names[$i]}
    if wait "${pids[$i]}"; then
      mv -f "$dest/.$name.new" "$dest/$name"
    else
      log "building $name failed (see the go output above)"
      failed=1
    fi
  done
  pids=()
  ((failed == 0)) || return 1
  log "built ${names[*]} in $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s"
}

# --- main --------------------------------------------------------------------------------------

if apiserver_ok && etcd_ok; then
  log "cached: reusing $dest"
elif download; then
  log "downloaded: $dest"
else
  log "falling back to the source build (no download site reachable)"
  source_build
  apiserver_ok && etcd_ok || { log "the built binaries do not run"; exit 1; }
  log "source build: $dest"
fi
echo "$dest"
