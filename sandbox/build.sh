#!/usr/bin/env bash
# Builds the sandbox's binaries from Go modules with the machine's Go, into a cache keyed by version:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes, wrapper module)
#   etcd (go.etcd.io/etcd/server/v3, wrapper module), kwok (go install), helm, stripe-mock (go install)
#   gpucloud-sshd (the instances' SSH server, images/sshd in this repository; keyed by a hash of its sources)
# A component whose binaries are already in the cache is skipped. Usage: sandbox/build.sh [component...]
# Components: etcd kwok kubernetes helm stripe-mock (default: all); real-nodes = kubernetes-node containerd runc
# cni-plugins kube-network-policies crane pause gpucloud-sshd (crane: go-containerregistry's CLI; pause:
# sandbox/images/pause; gpucloud-sshd: images/sshd, which prints the binary's path on stdout; both cached by a
# hash of their sources).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-}"
# Parallelism of the Go build; 2 cores here. Set SANDBOX_GO_P=1 if the linker runs out of memory.
GO_P="${SANDBOX_GO_P:-$(nproc)}"
WORK="$GPUCLOUD_CACHE_DIR/build"
mkdir -p "$WORK" "$BIN_ROOT"
command -v go >/dev/null || die "go is not on PATH"

go_line() {  # the go directive of a go.mod file
  awk '$1=="go"{print $2; exit}' "$1"
}

# Runs "$@" in the background and prints a progress line every 30 s while it runs.
with_progress() {
  local what=$1; shift
  local start=$SECONDS last=$SECONDS
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( SECONDS - last >= 30 )) && kill -0 "$pid" 2>/dev/null; then
      last=$SECONDS
      log "  ... $what still building ($((SECONDS - start)) s)"
    fi
  done
  wait "$pid"
}

finish() {  # finish DIR COMPONENT START
  touch "$1/.complete"
  log "$2 done in $((SECONDS - $3)) s -> $1"
}

build_etcd() {
  local out=$ETCD_BIN start=$SECONDS
  [[ -f $out/.complete && -x $out/etcd ]] && { log "etcd $ETCD_VERSION: cached ($out)"; return; }
  log "etcd $ETCD_VERSION: building (wrapper module)"
  local mod="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$mod" "$out"
  local json gomod
  json=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)",*/\1/p' <<<"$json")
  sed -e "s|@GO_LINE@|$(go_line "$gomod")|" -e "s|@ETCD_VERSION@|$ETCD_VERSION|" \
    "$SANDBOX_SRC/templates/etcd.go.mod.in" >"$mod/go.mod"
  (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 || true)
  (cd "$mod" && with_progress etcd go build -mod=mod -p "$GO_P" -trimpath -ldflags "-s -w" \
    -o "$out/etcd" go.etcd.io/etcd/server/v3)
  "$out/etcd" --version | head -1 >&2
  finish "$out" etcd "$start"
}

build_kwok() {
  local out=$KWOK_BIN start=$SECONDS
  [[ -f $out/.complete && -x $out/kwok ]] && { log "kwok $KWOK_VERSION: cached ($out)"; return; }
  log "kwok $KWOK_VERSION: building (go install)"
  mkdir -p "$out/stages"
  GOBIN="$out" with_progress kwok go install -p "$GO_P" -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # Standalone kwok has no default stages: keep the ones its module ships next to the binary.
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  local s
  for s in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f $dir/kustomize/stage/$s ]] || die "kwok stage $s not found in $dir"
    cp "$dir/kustomize/stage/$s" "$out/stages/"
  done
  chmod -R u+w "$out/stages"
  finish "$out" kwok "$start"
}

# Writes the wrapper module of k8s.io/kubernetes@K8S_VERSION (its staging modules pinned to their published
# versions) and sets K8S_MOD and K8S_LDFLAGS. Idempotent: the control plane and the node binaries share it.
k8s_wrapper_module() {
  K8S_MOD="$WORK/kubernetes-$K8S_VERSION"
  mkdir -p "$K8S_MOD"
  local json gomod
  json=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
  gomod=$(sed -n 's/.*"GoMod": "\(.*\)",*/\1/p' <<<"$json")
  [[ -f $gomod ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION"
  local staging="v0.${K8S_VERSION#v1.}"
  local replaces godebug
  # Every `k8s.io/X => ./staging/src/k8s.io/X` of the upstream go.mod becomes `k8s.io/X => k8s.io/X v0.MINOR.PATCH`.
  replaces=$(awk -v v="$staging" '$2=="=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\\n", $1, $1, v}' "$gomod")
  [[ -n $replaces ]] || die "no staging replace lines found in $gomod"
  godebug=$(awk '$1=="godebug"{print; exit}' "$gomod")
  if [[ ! -f $K8S_MOD/go.mod ]]; then
    awk -v r="$replaces" -v g="$godebug" -v go="$(go_line "$gomod")" -v k="$K8S_VERSION" '
      { gsub(/@GO_LINE@/, go); gsub(/@GODEBUG_LINE@/, g); gsub(/@K8S_VERSION@/, k)
        if ($0 == "@REPLACES@") { gsub(/\\n$/, "", r); n = split(r, a, /\\n/); for (i = 1; i <= n; i++) print a[i]; next }
        print }' "$SANDBOX_SRC/templates/kubernetes.go.mod.in" >"$K8S_MOD/go.mod"
  fi
  log "  wrapper go.mod: $K8S_MOD/go.mod ($(grep -c '=> k8s.io/' "$K8S_MOD/go.mod") staging replaces at $staging)"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local key val kv
  K8S_LDFLAGS="-s -w"
  for kv in "gitVersion=$K8S_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" \
            "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
    key=${kv%%=*}; val=${kv#*=}
    K8S_LDFLAGS+=" -X k8s.io/client-go/pkg/version.$key=$val -X k8s.io/component-base/version.$key=$val"
  done
}

build_kubernetes() {
  local out=$K8S_BIN start=$SECONDS
  local b
  if [[ -f $out/.complete ]]; then
    log "kubernetes $K8S_VERSION: cached ($out)"; return
  fi
  log "kubernetes $K8S_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl"
  log "  (wrapper module; a cold build takes a long time on 2 cores)"
  mkdir -p "$out"
  k8s_wrapper_module
  log "  downloading modules and compiling (go build -p $GO_P)"
  (cd "$K8S_MOD" && with_progress kubernetes go build -mod=mod -p "$GO_P" -trimpath \
      -tags=selinux,notest,grpcnotrace -ldflags "$K8S_LDFLAGS" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x $out/$b ]] || die "$b was not built"
  done
  "$out/kube-apiserver" --version >&2
  finish "$out" kubernetes "$start"
}

# ---- real nodes (docs/sandbox.md, "Real nodes") ---------------------------------------------------------

build_kubernetes_node() {  # kubelet and kube-proxy of the control plane's release, from the same wrapper module
  local out=$K8S_NODE_BIN start=$SECONDS
  [[ -f $out/.complete ]] && { log "kubelet, kube-proxy $K8S_VERSION: cached ($out)"; return; }
  log "kubelet, kube-proxy $K8S_VERSION: building (the control plane's wrapper module)"
  mkdir -p "$out"
  k8s_wrapper_module
  (cd "$K8S_MOD" && with_progress kubelet go build -mod=mod -p "$GO_P" -trimpath \
      -tags=selinux,notest,grpcnotrace -ldflags "$K8S_LDFLAGS" -o "$out/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  "$out/kubelet" --version >&2
  finish "$out" kubernetes-node "$start"
}

build_containerd() {  # containerd, its runc shim and ctr (to import the locally built images)
  local out=$CONTAINERD_BIN start=$SECONDS
  [[ -f $out/.complete ]] && { log "containerd $CONTAINERD_VERSION: cached ($out)"; return; }
  log "containerd $CONTAINERD_VERSION: building (go install)"
  mkdir -p "$out"
  local m=github.com/containerd/containerd/v2
  GOBIN="$out" with_progress containerd go install -p "$GO_P" -trimpath -tags "no_btrfs no_devmapper" \
    -ldflags "-s -w -X $m/version.Version=$CONTAINERD_VERSION" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "$m/cmd/ctr@$CONTAINERD_VERSION"
  finish "$out" containerd "$start"
}

build_runc() {  # cgo and libseccomp (Debian's libseccomp-dev): the RuntimeDefault seccomp profile needs it
  local out=$RUNC_BIN start=$SECONDS
  [[ -f $out/.complete && -x $out/runc ]] && { log "runc $RUNC_VERSION: cached ($out)"; return; }
  log "runc $RUNC_VERSION: building (cgo, seccomp)"
  ensure_debian_packages /usr/include/seccomp.h:libseccomp-dev
  mkdir -p "$out"
  GOBIN="$out" CGO_ENABLED=1 with_progress runc go install -p "$GO_P" -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION"
  finish "$out" runc "$start"
}

build_cni_plugins() {
  local out=$CNI_BIN start=$SECONDS
  [[ -f $out/.complete ]] && { log "CNI plugins $CNI_PLUGINS_VERSION: cached ($out)"; return; }
  log "CNI plugins $CNI_PLUGINS_VERSION: building bridge, host-local, loopback, portmap"
  mkdir -p "$out"
  local m=github.com/containernetworking/plugins/plugins
  GOBIN="$out" with_progress cni-plugins go install -p "$GO_P" -trimpath -ldflags "-s -w" \
    "$m/main/bridge@$CNI_PLUGINS_VERSION" "$m/main/loopback@$CNI_PLUGINS_VERSION" \
    "$m/ipam/host-local@$CNI_PLUGINS_VERSION" "$m/meta/portmap@$CNI_PLUGINS_VERSION"
  finish "$out" cni-plugins "$start"
}

build_kube_network_policies() {  # the NetworkPolicy enforcer kind uses (nftables and nfqueue)
  local out=$KNP_BIN start=$SECONDS
  [[ -f $out/.complete ]] && { log "kube-network-policies $KUBE_NETWORK_POLICIES_VERSION: cached ($out)"; return; }
  log "kube-network-policies $KUBE_NETWORK_POLICIES_VERSION: building (go install)"
  mkdir -p "$out"
  GOBIN="$out" with_progress kube-network-policies go install -p "$GO_P" -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kube-network-policies/cmd@$KUBE_NETWORK_POLICIES_VERSION"
  mv "$out/cmd" "$out/kube-network-policies"
  finish "$out" kube-network-policies "$start"
}

# The SSH server every instance runs (docs/ssh-server.md). Keyed by the sources rather than a version, so an
# edited file rebuilds and an unchanged tree is a cache hit.
build_gpucloud_sshd() {
  local src="$SANDBOX_SRC/../images/sshd" start=$SECONDS
  local files hash
  files=$(cd "$src" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort)
  [[ -n $files ]] || die "no Go sources in $src"
  hash=$(cd "$src" && sha256sum $files | sha256sum | cut -c1-12)
  local out="$BIN_ROOT/gpucloud-sshd-$hash"
  if [[ -f $out/.complete && -x $out/gpucloud-sshd ]]; then
    log "gpucloud-sshd $hash: cached ($out)"
  else
    log "gpucloud-sshd $hash: building (images/sshd, static)"
    mkdir -p "$out"
    (cd "$src" && with_progress gpucloud-sshd go build -mod=readonly -buildvcs=false -p "$GO_P" -trimpath \
      -ldflags "-s -w" -o "$out/gpucloud-sshd" .)
    finish "$out" gpucloud-sshd "$start"
  fi
  echo "$out/gpucloud-sshd"
}

build_crane() {  # builds the sandbox's images without a daemon and serves the local registry (sandbox/images.sh)
  local out=$CRANE_BIN start=$SECONDS
  [[ -f $out/.complete && -x $out/crane ]] && { log "crane $CRANE_VERSION: cached ($out)"; return; }
  log "crane $CRANE_VERSION: building (go install)"
  mkdir -p "$out"
  GOBIN="$out" with_progress crane go install -p "$GO_P" -trimpath -ldflags "-s -w" \
    "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
  "$out/crane" version >&2
  finish "$out" crane "$start"
}

build_pause() {  # the project's own pause (sandbox/images/pause), PID 1 of every pod sandbox; cached by source hash
  local out start=$SECONDS
  out=$(pause_bin_dir)
  [[ -f $out/.complete && -x $out/pause ]] && { log "pause: cached ($out)"; return; }
  log "pause: building ($PAUSE_SRC)"
  mkdir -p "$out"
  (cd "$PAUSE_SRC" && go build -trimpath -ldflags "-s -w" -o "$out/pause" .)
  finish "$out" pause "$start"
}

build_helm() {
  local out=$HELM_BIN start=$SECONDS
  [[ -f $out/.complete && -x $out/helm ]] && { log "helm $HELM_VERSION: cached ($out)"; return; }
  log "helm $HELM_VERSION: building"
  mkdir -p "$out"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  if ! GOBIN="$out" with_progress helm go install -p "$GO_P" -trimpath -ldflags "$ld" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; then
    log "  go install refused; using a wrapper module"
    local mod="$WORK/helm-$HELM_VERSION"
    mkdir -p "$mod"
    sed -e "s|@GO_LINE@|$(go env GOVERSION | sed 's/^go//')|" -e "s|@HELM_VERSION@|$HELM_VERSION|" \
      "$SANDBOX_SRC/templates/helm.go.mod.in" >"$mod/go.mod"
    (cd "$mod" && with_progress helm go build -mod=mod -p "$GO_P" -trimpath -ldflags "$ld" \
      -o "$out/helm" helm.sh/helm/v3/cmd/helm)
  fi
  "$out/helm" version --short >&2 || true
  finish "$out" helm "$start"
}

build_stripe_mock() {
  local out=$STRIPE_MOCK_BIN start=$SECONDS
  [[ -f $out/.complete && -x $out/stripe-mock ]] && { log "stripe-mock $STRIPE_MOCK_VERSION: cached ($out)"; return; }
  log "stripe-mock $STRIPE_MOCK_VERSION: building (go install)"
  mkdir -p "$out"
  GOBIN="$out" with_progress stripe-mock go install -p "$GO_P" -trimpath \
    -ldflags "-s -w -X main.version=${STRIPE_MOCK_VERSION#v}" \
    "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION"
  finish "$out" stripe-mock "$start"
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kwok kubernetes helm stripe-mock)
total=$SECONDS
log "building into $BIN_ROOT with $(go version | awk '{print $3}') (-p $GO_P): ${components[*]}"
for c in "${components[@]}"; do
  case $c in
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    kubernetes|k8s) build_kubernetes ;;
    helm) build_helm ;;
    stripe-mock) build_stripe_mock ;;
    kubernetes-node|kubelet) build_kubernetes_node ;;
    containerd) build_containerd ;;
    runc) build_runc ;;
    cni-plugins) build_cni_plugins ;;
    kube-network-policies) build_kube_network_policies ;;
    gpucloud-sshd) build_gpucloud_sshd ;;
    crane) build_crane ;;
    pause) build_pause ;;
    real-nodes) build_kubernetes_node; build_containerd; build_runc; build_cni_plugins; build_kube_network_policies
      build_crane; build_pause; build_gpucloud_sshd >/dev/null ;;
    *) die "unknown component $c" ;;
  esac
done
log "build finished in $((SECONDS - total)) s"
