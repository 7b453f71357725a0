# Shared settings for the sandbox scripts (sourced, not executed).
SANDBOX_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$SANDBOX_SRC/versions.env"
GPUCLOUD_CACHE_DIR="${GPUCLOUD_CACHE_DIR:-$HOME/.cache/gpucloud}"
BIN_ROOT="$GPUCLOUD_CACHE_DIR/bin"
K8S_BIN="$BIN_ROOT/kubernetes-$K8S_VERSION"
ETCD_BIN="$BIN_ROOT/etcd-$ETCD_VERSION"
KWOK_BIN="$BIN_ROOT/kwok-$KWOK_VERSION"
HELM_BIN="$BIN_ROOT/helm-$HELM_VERSION"
STRIPE_MOCK_BIN="$BIN_ROOT/stripe-mock-$STRIPE_MOCK_VERSION"
K8S_NODE_BIN="$BIN_ROOT/kubernetes-node-$K8S_VERSION"
CONTAINERD_BIN="$BIN_ROOT/containerd-$CONTAINERD_VERSION"
RUNC_BIN="$BIN_ROOT/runc-$RUNC_VERSION"
CNI_BIN="$BIN_ROOT/cni-plugins-$CNI_PLUGINS_VERSION"
KNP_BIN="$BIN_ROOT/kube-network-policies-$KUBE_NETWORK_POLICIES_VERSION"
CRANE_BIN="$BIN_ROOT/crane-$CRANE_VERSION"
PAUSE_SRC="$SANDBOX_SRC/images/pause"
# Components built from the project's own sources are cached by a hash of those sources (12 hex digits).
src_hash() {  # src_hash DIR
  (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12
}
pause_bin_dir() { echo "$BIN_ROOT/pause-$(src_hash "$PAUSE_SRC")"; }
log() { printf '[sandbox %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ensure_debian_packages CMD:PACKAGE...: installs (apt-get, as root) the Debian packages whose command or file
# is missing, e.g. `ensure_debian_packages jq:jq /usr/include/seccomp.h:libseccomp-dev`.
ensure_debian_packages() {
  local pair what pkg missing=()
  for pair in "$@"; do
    what=${pair%%:*}; pkg=${pair#*:}
    if [[ $what == /* ]]; then [[ -e $what ]] || missing+=("$pkg"); else command -v "$what" >/dev/null || missing+=("$pkg"); fi
  done
  [[ ${#missing[@]} -gt 0 ]] || return 0
  [[ $(id -u) == 0 ]] || die "missing Debian packages ${missing[*]}: install them as root (apt-get install ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
}

# What real nodes need from Debian (docs/sandbox.md "Real nodes"): runc's seccomp, the nodes' networking and
# filtering, the instance image's build.
REAL_NODE_PACKAGES=(/usr/include/seccomp.h:libseccomp-dev jq:jq nft:nftables iptables:iptables ip:iproute2
  conntrack:conntrack nsenter:util-linux mmdebstrap:mmdebstrap)
