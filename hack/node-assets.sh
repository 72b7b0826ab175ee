#!/usr/bin/env bash
# Puts the Kubernetes node binaries that `make e2e` and `make cluster` run beside envtest's
# kube-apiserver and etcd into a cache, and prints its directory. Fastest path first:
#   1. cached: the cache already has them (instant);
#   2. download: dl.k8s.io, checked against its .sha256 files (seconds where the site answers);
#   3. source build: where it does not, built from the Go module proxy as hack/envtest-assets.sh
#      builds kube-apiserver (minutes, CPU-bound, once).
#
# Versions, and why (the skew policy is checked against kube-apiserver ${KUBE_VERSION}):
#   kube-controller-manager, kube-scheduler, kube-proxy, kubectl: KUBE_VERSION (1.37.2), the same
#     release as the envtest kube-apiserver, so their Go packages come from the same build cache.
#   kubelet: KUBELET_VERSION (1.34.4). This machine kind has cgroup v1 and Debian's containerd
#     1.6: kubelet 1.35 is the last to support containerd 1.x and refuses cgroup v1 unless told,
#     1.34 is verified here (../shared/REAL-NODE.md), and three minors below kube-apiserver is
#     inside the skew policy.
#
# Usage: hack/node-assets.sh [name...]   prints the directory holding the binaries (default: all)
# Env:   KUBE_VERSION (1.37.2), KUBELET_VERSION (1.34.4), NODE_ASSETS (the cache directory),
#        NODE_DOWNLOAD_TIMEOUT (seconds per file, 300), NODE_DOWNLOAD_URL (https://dl.k8s.io/release)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
KUBELET_VERSION=${KUBELET_VERSION:-1.34.4}
NODE_DOWNLOAD_TIMEOUT=${NODE_DOWNLOAD_TIMEOUT:-300}
NODE_DOWNLOAD_URL=${NODE_DOWNLOAD_URL:-https://dl.k8s.io/release}
arch=$(go env GOARCH)
NODE_ASSETS=${NODE_ASSETS:-${XDG_DATA_HOME:-$HOME/.local/share}/segment-webhook-operator/node/${KUBE_VERSION}-kubelet-${KUBELET_VERSION}-linux-${arch}}
dest=$NODE_ASSETS
# Measured on this project's 2-core machines with a cold Go build cache.
ESTIMATE_CONTROL="about 8 min (3 min when the envtest kube-apiserver of the same release was just built)"
ESTIMATE_KUBELET="about 5 min"

log() { printf '[node-assets] %s\n' "$*" >&2; }

control=(kube-controller-manager kube-scheduler kube-proxy kubectl)
version_of() { case $1 in kubelet) echo "$KUBELET_VERSION" ;; *) echo "$KUBE_VERSION" ;; esac; }
ok() {
  local args=(--version); [[ $1 == kubectl ]] && args=(version --client)
  local out
  # The output is read whole: grep -q would stop reading early, and under pipefail the writer's
  # SIGPIPE would fail the check.
  [[ -x "$dest/$1" ]] && out=$("$dest/$1" "${args[@]}" 2>/dev/null) && [[ $out == *"v$(version_of "$1")"* ]]
}
# Arguments name the binaries wanted (all of them by default).
wanted=("$@")
((${#wanted[@]})) || wanted=("${control[@]}" kubelet)
missing() { local n; for n in "${wanted[@]}"; do ok "$n" || echo "$n"; done; }

# --- 2. download -------------------------------------------------------------------------------

download() {
  local name ver url sum
  command -v curl >/dev/null || { log "download skipped: no curl"; return 1; }
  for name in "$@"; do
    ver=$(version_of "$name")
    url="$NODE_DOWNLOAD_URL/v$ver/bin/linux/$arch/$name"
    log "downloading $name v$ver from $url"
    sum=$(curl -fsSL --connect-timeout 10 --max-time 30 "$url.sha256" 2>/dev/null) || { log "download failed: $url.sha256 did not answer"; return 1; }
    curl -fsSL --connect-timeout 10 --max-time "$NODE_DOWNLOAD_TIMEOUT" -o "$dest/.$name.new" "$url" || { log "download failed: $url"; return 1; }
    echo "$sum  $dest/.$name.new" | sha256sum -c --quiet - >&2 || { log "download failed: $name does not match its sha256"; return 1; }
    chmod +x "$dest/.$name.new" && mv -f "$dest/.$name.new" "$dest/$name"
  done
}

# --- 3. source build ---------------------------------------------------------------------------

work=""
pids=()
cleanup() {
  local pid
  for pid in ${pids[@]+"${pids[@]}"}; do
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  if [[ -n "$work" ]]; then rm -rf "$work" "$dest"/.*.new "$dest"/.new-*; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build VERSION NAME... builds the k8s.io/kubernetes commands NAME... of one release in a throwaway
# module (the staging modules pinned to their published releases, as hack/envtest-assets.sh does),
# in one `go build`, so that the packages they share compile once. It ends in `exec go build`.
build() {
  local ver=$1; shift
  local minor=${ver#*.}; minor=${minor%%.*}
  local staging="v0.${ver#*.}" gomod pkg=k8s.io/component-base/version name pkgs=() out="$dest/.new-$ver"
  for name in "$@"; do
    case $name in kubectl) pkgs+=(k8s.io/kubernetes/cmd/kubectl) ;; *) pkgs+=("k8s.io/kubernetes/cmd/$name") ;; esac
  done
  mkdir -p "$work/$ver" "$out" && cd "$work/$ver"
  go mod init "node-assets-$ver" >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v${ver}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | while read -r mod; do
    go mod edit -replace "${mod}=${mod}@${staging}"
  done
  go mod edit -require "k8s.io/kubernetes@v${ver}"
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'; printf '\t_ "%s"\n' "${pkgs[@]}"; printf ')\n'; } > tools.go
  go mod tidy >/dev/null
  CGO_ENABLED=0 exec go build -trimpath -o "$out/" -ldflags "-s -w \
    -X $pkg.gitVersion=v${ver} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} \
    -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z \
    -X k8s.io/client-go/pkg/version.gitVersion=v${ver} -X k8s.io/client-go/pkg/version.gitMajor=1 \
    -X k8s.io/client-go/pkg/version.gitMinor=${minor}" \
    "${pkgs[@]}"
}

source_build() {
  local names=("$@") groups=() labels=() n i start=$SECONDS failed=0 want_control=()
  for n in "${names[@]}"; do [[ $n == kubelet ]] || want_control+=("$n"); done
  work=$(mktemp -d)
  if ((${#want_control[@]})); then
    log "building ${want_control[*]} v${KUBE_VERSION} from the Go module proxy: ${ESTIMATE_CONTROL} on 2 idle cores"
    (build "$KUBE_VERSION" "${want_control[@]}") & pids+=($!); groups+=("$KUBE_VERSION"); labels+=("${want_control[*]}")
  fi
  if [[ " ${names[*]} " == *" kubelet "* ]]; then
    log "building kubelet v${KUBELET_VERSION} from the Go module proxy: ${ESTIMATE_KUBELET} on 2 idle cores"
    (build "$KUBELET_VERSION" kubelet) & pids+=($!); groups+=("$KUBELET_VERSION"); labels+=(kubelet)
  fi
  log "this happens once: later runs reuse $dest"
  local tick=0 running
  while :; do
    running=()
    for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && running+=("${labels[$i]}"); done
    ((${#running[@]})) || break
    sleep 1
    if (( ++tick % 30 == 0 )); then
      log "still building ${running[*]}: $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s so far"
    fi
  done
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then
      for n in "$dest/.new-${groups[$i]}"/*; do mv -f "$n" "$dest/$(basename "$n")"; done
    else
      log "building ${labels[$i]} failed (see the go output above)"
      failed=1
    fi
  done
  pids=()
  ((failed == 0)) || return 1
  log "built ${names[*]} in $(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s"
}

# --- main --------------------------------------------------------------------------------------

mkdir -p "$dest"
mapfile -t need < <(missing)
if ((${#need[@]} == 0)); then
  log "cached: reusing $dest"
elif download "${need[@]}"; then
  log "downloaded: $dest"
else
  mapfile -t need < <(missing)
  log "falling back to the source build (no download site answered)"
  source_build "${need[@]}"
  mapfile -t need < <(missing)
  ((${#need[@]} == 0)) || { log "the built binaries do not run: ${need[*]}"; exit 1; }
  log "source build: $dest"
fi
echo "$dest"
