#!/usr/bin/env bash
# Installs what a real node needs from Debian, when it is missing: containerd 1.6, runc, the CNI
# plugins (bridge, host-local, loopback, portmap), iptables and iproute2. Needs root.
set -euo pipefail
missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
((${#missing[@]})) || exit 0
if [[ $(id -u) != 0 ]]; then
  echo "[node-packages] missing ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "[node-packages] installing ${missing[*]} from Debian (about a minute)" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
