#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver + etcd) from the Go module proxy alone, since
# no other download site is reachable where this project is built and tested. The binaries are
# cached in setup-envtest's store layout, so later runs (and setup-envtest itself) reuse them.
#
# Usage: hack/envtest-assets.sh            prints the asset directory (KUBEBUILDER_ASSETS)
# Env:   KUBE_VERSION (default 1.37.2), ETCD_VERSION (default 3.6.16), ENVTEST_STORE
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=$(uname -s | tr A-Z a-z) ;; esac
arch=$(go env GOARCH)
if [[ -z "${ENVTEST_STORE:-}" ]]; then
  if [[ "$os" == darwin ]]; then ENVTEST_STORE="$HOME/Library/Application Support/io.kubebuilder.envtest"
  else ENVTEST_STORE="${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest"; fi
fi
dest="$ENVTEST_STORE/k8s/${KUBE_VERSION}-${os}-${arch}"

log() { printf '[envtest-assets] %s\n' "$*" >&2; }

# A build that takes minutes should show it is alive.
with_progress() {
  local what=$1; shift
  local start=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && log "still building $what ($((SECONDS - start))s)"
  done
  wait "$pid"
  log "built $what in $((SECONDS - start))s"
}

# A cached binary is reused only when it reports the wanted version.
version_ok() { [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -F "$2" >/dev/null; }

build_kube_apiserver() {
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  local minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local staging="v0.${KUBE_VERSION#*.}"
  (
    cd "$work"
    go mod init envtest-kube-apiserver >/dev/null 2>&1
    # k8s.io/kubernetes points its staging modules at ./staging; pin each to its published release.
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$gomod" | awk '{print $1}' | while read -r mod; do
      go mod edit -replace "${mod}=${mod}@${staging}"
    done
    go mod edit -require "k8s.io/kubernetes@v${KUBE_VERSION}"
    cat > tools.go <<GO
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
    go mod tidy >/dev/null
    local pkg=k8s.io/component-base/version
    CGO_ENABLED=0 go build -trimpath -o "$dest/kube-apiserver" -ldflags "-s -w \
      -X $pkg.gitVersion=v${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor} \
      -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
}

build_etcd() {
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (
    cd "$work"
    go mod init envtest-etcd >/dev/null 2>&1
    go mod edit -require "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    go mod tidy >/dev/null
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest/etcd" go.etcd.io/etcd/server/v3
  )
}

mkdir -p "$dest"
if ! version_ok "$dest/kube-apiserver" "v${KUBE_VERSION}"; then
  log "building kube-apiserver v${KUBE_VERSION} from the Go module proxy (first run only, ~5 min cold)"
  with_progress kube-apiserver build_kube_apiserver
fi
if ! version_ok "$dest/etcd" "${ETCD_VERSION}"; then
  log "building etcd v${ETCD_VERSION} from the Go module proxy (first run only)"
  with_progress etcd build_etcd
fi
echo "$dest"
