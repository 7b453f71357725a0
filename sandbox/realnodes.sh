# Real kubelet nodes of the sandbox (sourced by sandbox.sh, not executed; docs/sandbox.md "Real nodes").
#
# Beside its kwok nodes, a region gets the real nodes sandbox/fleet.yaml lists (`real: true` shapes):
# containerd + runc + the CNI bridge, a kubelet, kube-proxy and kube-network-policies, all of this machine,
# so containers really run, probes really probe, logs are real and NetworkPolicies drop real packets.
#
# Each node is a network namespace and a mount namespace of its own (what kind does with containers):
#   - network: a veth on the instance's bridge gcs<slot>br (172.<20+slot>.0.<11+i>/24, the machine is .1),
#     its pods on a bridge inside it (10.<100+slot>.<i>.0/24); the machine routes between nodes' pod ranges,
#     so pods on two nodes talk as on two machines. The node's kubelet (10250), kube-proxy's NodePorts and
#     the policy enforcer's nftables tables are the node's own: nothing clashes between nodes or instances.
#   - mount: /var/lib/kubelet, /var/log/pods and /var/log/containers are bind mounts of the node's own
#     directories (the kubelet hard-codes some paths under them, e.g. the device-plugin socket).
#   - the apiserver listens on the machine's 127.0.0.1 only: sandbox/netns_forward.py gives each node a
#     127.0.0.1:<apiserver port> of its own that leads to it.
#   - images come from the instance's local registry (sandbox/images.sh) on the bridge address: containerd
#     mirrors every registry to it, so a pod naming a stock catalog image pulls the local stand-in.
#   - an "internet" namespace holds 203.0.113.<10+slot> (a documentation address, not private): the
#     stand-in for the internet that the tests' allowed and blocked egress reaches.
# Nothing is forwarded off the machine: the machine drops what the pods send anywhere but the sandbox's own
# addresses (table gcs<slot> in the machine's nftables).
#
# Settings: GPUCLOUD_SANDBOX_REAL_NODES (1 or 0; default 1 for the instances `default` and `test` when run as
# root, else 0: without root the sandbox has kwok nodes only, and the real-node tests fail).

REAL_BASE="$SANDBOX_DIR/real"
REAL_S=$SANDBOX_SLOT
REAL_BRIDGE="gcs${REAL_S}br"
REAL_NODE_NET="172.$((20 + REAL_S)).0"
REAL_HOST_IP="$REAL_NODE_NET.1"
REAL_POD_NET="10.$((100 + REAL_S))"
REAL_INET_IP="203.0.113.$((10 + REAL_S))"
REAL_INET_NS="gpucloud-$SANDBOX_INSTANCE-inet"
REAL_REGISTRY_PORT=$(instance_port 15000)
REAL_REGISTRY="$REAL_HOST_IP:$REAL_REGISTRY_PORT"
REAL_NFT_TABLE="gcs$REAL_S"
REAL_COMPONENTS=(containerd netns_forward.py kubelet kube-proxy kube-network-policies)

real_nodes_enabled() {
  local want=${GPUCLOUD_SANDBOX_REAL_NODES:-}
  if [[ -z $want ]]; then
    # By default for make run's and the tests' instances, when this user can make namespaces (root).
    want=0
    [[ ($SANDBOX_INSTANCE == default || $SANDBOX_INSTANCE == test) && $(id -u) == 0 ]] && want=1
  fi
  [[ $want == 1 ]]
}

# The real nodes of the regions this start runs (GPUCLOUD_SANDBOX_REGIONS), one JSON object per line. A
# node's number (its addresses) stays the one the whole fleet gives it.
real_fleet() {
  local wanted
  wanted=$(regions | jq -Rsc 'split("\n") | map(select(length > 0))')
  fleet real-nodes | jq -c --argjson wanted "$wanted" 'select(.region as $r | $wanted | index($r))'
}

# real_node_vars JSON: sets N (name), NI (index), NR (region), NDIR, NNS (netns), NIP, NPODS, NCG (cgroup)
real_node_vars() {
  local json=$1
  N=$(jq -r .name <<<"$json")
  NI=$(jq -r .index <<<"$json")
  NR=$(jq -r .region <<<"$json")
  NDIR="$REAL_BASE/$N"
  NNS="gpucloud-$SANDBOX_INSTANCE-$N"
  NIP="$REAL_NODE_NET.$((11 + NI))"
  NPODS="$REAL_POD_NET.$NI.0/24"
  NCG="gpucloud-$SANDBOX_INSTANCE-$N"
}

real_pidfile() { echo "$REAL_BASE/$1/pids/$2.pid"; }

real_alive() {  # real_alive NODE COMPONENT
  local f pid
  f=$(real_pidfile "$1" "$2")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2 " || return 1
}

# in_node NODE-NETNS MNT-FILE CMD...: runs CMD inside the node's network and mount namespaces.
in_node() { nsenter --net="/run/netns/$1" --mount="$2" -- "${@:3}"; }

# real_spawn COMPONENT BINARY ARGS...: starts a node's component detached, inside the node's namespaces
# (REAL_IN_HOST=1: in the machine's, for the apiserver forwarder, which makes its node socket itself).
real_spawn() {
  local comp=$1; shift
  mkdir -p "$NDIR/pids" "$LOGS/real/$N"
  local enter=(nsenter --net="/run/netns/$NNS" --mount="$NDIR/mnt.ns" --)
  [[ ${REAL_IN_HOST:-0} == 1 ]] && enter=()
  setsid "${enter[@]}" "$@" >"$LOGS/real/$N/$comp.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$(real_pidfile "$N" "$comp")"
}

# ---- the machine's side: bridge, routes, filter, internet stand-in ---------------------------------------

real_host_network() {
  if ! ip link show "$REAL_BRIDGE" >/dev/null 2>&1; then
    ip link add "$REAL_BRIDGE" type bridge
    ip addr add "$REAL_HOST_IP/24" dev "$REAL_BRIDGE"
  fi
  ip link set "$REAL_BRIDGE" up
  # Pods on one node reach pods on another through the machine (and the kernel has to forward for that).
  sysctl -qw net.ipv4.ip_forward=1
  # Only the sandbox's own addresses: nothing the pods send leaves the machine, whatever a policy allows.
  nft -f - <<EOF
table ip $REAL_NFT_TABLE
delete table ip $REAL_NFT_TABLE
table ip $REAL_NFT_TABLE {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip saddr $REAL_POD_NET.0.0/16 ip daddr != { $REAL_POD_NET.0.0/16, $REAL_NODE_NET.0/24, $REAL_INET_IP } drop
  }
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr $REAL_POD_NET.0.0/16 ct state new drop
  }
}
EOF
  real_inet_network
}

real_inet_network() {  # the internet stand-in: a namespace holding $REAL_INET_IP on the bridge
  ip netns list | grep -qw "^$REAL_INET_NS" || ip netns add "$REAL_INET_NS"
  local hv="gcs${REAL_S}inet"
  if ! ip link show "$hv" >/dev/null 2>&1; then
    ip link add "$hv" type veth peer name eth0 netns "$REAL_INET_NS"
    ip link set "$hv" master "$REAL_BRIDGE" up
    ip -n "$REAL_INET_NS" addr add "$REAL_INET_IP/32" dev eth0
    ip -n "$REAL_INET_NS" link set lo up
    ip -n "$REAL_INET_NS" link set eth0 up
    ip -n "$REAL_INET_NS" route add "$REAL_HOST_IP" dev eth0
    ip -n "$REAL_INET_NS" route add default via "$REAL_HOST_IP" dev eth0
  fi
  ip route replace "$REAL_INET_IP/32" dev "$REAL_BRIDGE"
}

real_node_network() {  # the node's namespace, its veth on the bridge, and the machine's route to its pods
  local hv="gcs${REAL_S}n$NI"
  # Built again unless the namespace's eth0 has the node's address: a namespace once outlived its
  # deletion (listed without an id, its veth gone) and the kubelet found "network is unreachable".
  if ! ip -n "$NNS" -4 addr show dev eth0 2>/dev/null | grep -qF " $NIP/"; then
    ip link del "$hv" 2>/dev/null || true
    ip netns del "$NNS" 2>/dev/null || true
    ip netns add "$NNS"
    ip link add "$hv" type veth peer name eth0 netns "$NNS"
    ip link set "$hv" master "$REAL_BRIDGE" up
    ip -n "$NNS" addr add "$NIP/24" dev eth0
    ip -n "$NNS" link set lo up
    ip -n "$NNS" link set eth0 up
    ip -n "$NNS" route add default via "$REAL_HOST_IP"
  fi
  ip netns exec "$NNS" sysctl -qw net.ipv4.ip_forward=1
  ip route replace "$NPODS" via "$NIP" dev "$REAL_BRIDGE"
  # The node's own firewall: its pods may not open connections to the node itself (kubelet, kube-proxy
  # health, anything on the node's addresses). NetworkPolicy covers traffic through the node, not to it.
  ip netns exec "$NNS" nft -f - <<EOF
table inet gpucloud-node
delete table inet gpucloud-node
table inet gpucloud-node {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr $NPODS ct state new drop
  }
}
EOF
  real_node_policy_queue
}

# kube-network-policies decides the first packet of each connection in user space, from an nfqueue. Its
# own nftables rules use nftables' `queue` expression, which the kernel of these VMs lacks (`nft add rule
# ... queue num 100` answers "No such file or directory"); iptables' NFQUEUE target (through nft's xtables
# compatibility) works. So the node queues with iptables what kube-network-policies would queue: new
# connections from or to the node's pods, not the node's own root processes (the kubelet's probes).
# kube-network-policies then accepts or drops each of them by the NetworkPolicies, as upstream.
real_node_policy_queue() {
  local ipt=(ip netns exec "$NNS" iptables -w 5 -t mangle)
  "${ipt[@]}" -N GPUCLOUD-NETPOL 2>/dev/null || "${ipt[@]}" -F GPUCLOUD-NETPOL
  "${ipt[@]}" -C POSTROUTING -j GPUCLOUD-NETPOL 2>/dev/null || "${ipt[@]}" -A POSTROUTING -j GPUCLOUD-NETPOL
  "${ipt[@]}" -A GPUCLOUD-NETPOL -m owner --uid-owner 0 -j RETURN
  "${ipt[@]}" -A GPUCLOUD-NETPOL -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  "${ipt[@]}" -A GPUCLOUD-NETPOL -s "$NPODS" -j NFQUEUE --queue-num 100
  "${ipt[@]}" -A GPUCLOUD-NETPOL -d "$NPODS" -j NFQUEUE --queue-num 100
}

real_node_mounts() {  # a mount namespace of the node's own, kept by a bind mount of its file
  mkdir -p /run/gpucloud-sandbox "$NDIR"/{kubelet,pod-logs,container-logs} /var/lib/kubelet /var/log/pods \
    /var/log/containers /run/secrets/kubernetes.io/serviceaccount
  if ! findmnt -n /run/gpucloud-sandbox >/dev/null; then
    mount --bind /run/gpucloud-sandbox /run/gpucloud-sandbox
    mount --make-private /run/gpucloud-sandbox
  fi
  if [[ -f $NDIR/mnt.ns ]] && findmnt -n "$NDIR/mnt.ns" >/dev/null 2>&1; then return; fi
  local ns="/run/gpucloud-sandbox/$NNS.mnt"
  touch "$ns"
  umount "$ns" 2>/dev/null || true
  unshare --mount="$ns" --propagation slave bash -c "
    mount --bind '$NDIR/kubelet' /var/lib/kubelet
    mount --bind '$NDIR/pod-logs' /var/log/pods
    mount --bind '$NDIR/container-logs' /var/log/containers
    mount --bind '$REAL_BASE/netpol-$NR' /run/secrets/kubernetes.io/serviceaccount"
  ln -sfn "$ns" "$NDIR/mnt.ns"
}

real_node_cgroups() {  # each kubelet its own cgroup subtree, or two kubelets clean up each other's pods
  local c
  for c in /sys/fs/cgroup/*/; do
    [[ -d $c && ! -L ${c%/} ]] || continue
    mkdir -p "$c$NCG"
    if [[ -f ${c}cpuset.cpus ]]; then
      cat "${c}cpuset.cpus" >"$c$NCG/cpuset.cpus"
      cat "${c}cpuset.mems" >"$c$NCG/cpuset.mems"
    fi
  done
}

# ---- configuration files ----------------------------------------------------------------------------------

real_kubeconfig() {  # real_kubeconfig FILE CERT-NAME
  local file=$1 cert=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NR
  cluster:
    server: https://127.0.0.1:$R_API
    certificate-authority: $PKI/ca.crt
users:
- name: $cert
  user:
    client-certificate: $PKI/$cert.crt
    client-key: $PKI/$cert.key
contexts:
- name: $NR
  context: {cluster: $NR, user: $cert}
current-context: $NR
EOF
  chmod 600 "$file"
}

real_node_config() {
  mkdir -p "$NDIR"/{cni,cni-ipam,certs.d/_default,containerd-root,containerd-state,runc} "$NDIR/kubelet-pki"
  cat >"$NDIR/containerd.toml" <<EOF
version = 3
root = '$NDIR/containerd-root'
state = '$NDIR/containerd-state'
temp = '$NDIR/containerd-tmp'
[grpc]
  address = '$NDIR/containerd.sock'
[ttrpc]
  address = '$NDIR/containerd.sock.ttrpc'
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'registry.k8s.io/pause:3.10'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$NDIR/certs.d'
[plugins.'io.containerd.cri.v1.runtime']
  # These VMs lack CAP_SYS_RESOURCE: runc cannot lower a process's OOM score (docs/sandbox.md).
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$RUNC_BIN/runc'
        Root = '$NDIR/runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$CNI_BIN']
    conf_dir = '$NDIR/cni'
    max_conf_num = 1
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.nri.v1.nri']
  disable = true
EOF
  # Every registry is mirrored to the instance's local one (no registry of the internet is reachable).
  cat >"$NDIR/certs.d/_default/hosts.toml" <<EOF
[host."http://$REAL_REGISTRY"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
EOF
  cat >"$NDIR/cni/10-gpucloud.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "gpucloud-sandbox",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NDIR/cni-ipam",
              "ranges": [[{"subnet": "$NPODS"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  local taints
  taints=$(jq -c '[.taints[] | {key, value, effect}]' <<<"$1")
  cat >"$NDIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# kubelet 1.35 refuses cgroup v1 unless told; these VMs have nothing else (docs/sandbox.md "Real nodes").
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NCG
containerRuntimeEndpoint: unix://$NDIR/containerd.sock
address: $NIP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDNS: []
resolvConf: ""
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
maxPods: 20
serializeImagePulls: false
registerWithTaints: $taints
podLogsDir: /var/log/pods
EOF
  real_kubeconfig "$NDIR/kubelet.kubeconfig" "node-$N"
  real_kubeconfig "$NDIR/kube-proxy.kubeconfig" kube-proxy
  cat >"$NDIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NDIR/kube-proxy.kubeconfig}
mode: nftables
hostnameOverride: $N
clusterCIDR: $REAL_POD_NET.0.0/16
nodePortAddresses: [$NIP/32]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0}
EOF
}

# ---- start, stop, status -------------------------------------------------------------------------------

real_rbac() {  # the apiserver's kubelet client and the policy enforcer's rights, in region $R
  kubectl_r "$R" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gpucloud-sandbox:apiserver-kubelet-client, labels: {gpucloud.io/sandbox: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gpucloud-sandbox:netpol, labels: {gpucloud.io/sandbox: "true"}}
rules:
- {apiGroups: [""], resources: [pods, namespaces, nodes], verbs: [list, watch, get]}
- {apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [list, watch, get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gpucloud-sandbox:netpol, labels: {gpucloud.io/sandbox: "true"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gpucloud-sandbox:netpol}
subjects: [{kind: ServiceAccount, name: gpucloud-sandbox-netpol, namespace: kube-system}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: gpucloud-sandbox-netpol, namespace: kube-system, labels: {gpucloud.io/sandbox: "true"}}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: gpucloud-sandbox-netpol
  namespace: kube-system
  labels: {gpucloud.io/sandbox: "true"}
  annotations: {kubernetes.io/service-account.name: gpucloud-sandbox-netpol}
EOF
  # kube-network-policies knows only the in-cluster configuration: a service account token at the fixed
  # path (bind-mounted in each node's mount namespace) and KUBERNETES_SERVICE_HOST/PORT.
  wait_for "$R token of the policy enforcer" bash -c "$(declare -f kubectl_r); K8S_BIN='$K8S_BIN' \
    SANDBOX_DIR='$SANDBOX_DIR'; kubectl_r '$R' -n kube-system get secret gpucloud-sandbox-netpol \
    -o jsonpath='{.data.token}' | grep -q ." || return 1
  mkdir -p "$REAL_BASE/netpol-$R"
  kubectl_r "$R" -n kube-system get secret gpucloud-sandbox-netpol -o jsonpath='{.data.token}' | base64 -d \
    >"$REAL_BASE/netpol-$R/token"
  cp "$PKI/ca.crt" "$REAL_BASE/netpol-$R/ca.crt"
  chmod 600 "$REAL_BASE/netpol-$R/token"
}

real_node_ready() {  # the node is Ready and advertises its extended resources
  local json
  json=$(kubectl_r "$NR" get node "$N" -o json 2>/dev/null) || return 1
  [[ $(jq -r '.status.conditions[]? | select(.type=="Ready") | .status' <<<"$json") == True ]] || return 1
  jq -e --argjson want "$1" '$want | to_entries | all(.value == ($want[.key]))' \
    <<<"$(jq -c '.status.capacity' <<<"$json")" >/dev/null
}

real_advertise() {  # the node's extended resources (nvidia.com/gpu), as a device plugin would advertise them
  local extended=$1 patch
  patch=$(jq -c '{status: {capacity: ., allocatable: .}}' <<<"$extended")
  kubectl_r "$NR" patch node "$N" --subresource=status --type=merge -p "$patch" >/dev/null 2>&1
}

start_real_node() {
  local json=$1
  real_node_vars "$json"
  set_region_vars "$NR"
  local c up=1
  for c in "${REAL_COMPONENTS[@]}"; do real_alive "$N" "$c" || up=0; done
  if [[ $up == 1 ]]; then log "real node $N: already running"; return; fi
  stop_real_node "$json"
  real_node_vars "$json"
  set_region_vars "$NR"
  log "real node $N ($NR, $NIP, pods $NPODS): starting"
  real_node_network
  real_node_mounts
  real_node_cgroups
  real_node_config "$json"
  real_spawn containerd "$CONTAINERD_BIN/containerd" --config "$NDIR/containerd.toml"
  REAL_IN_HOST=1 real_spawn netns_forward.py "$(pick_python)" "$SANDBOX_SRC/netns_forward.py" "/run/netns/$NNS" \
    "$R_API" "$R_API"
  wait_for "$N containerd socket" test -S "$NDIR/containerd.sock" || return 1
  local labels
  labels=$(jq -r '.labels | to_entries | map("\(.key)=\(.value)") | join(",")' <<<"$json")
  PATH="$CONTAINERD_BIN:$PATH" real_spawn kubelet "$K8S_NODE_BIN/kubelet" --config "$NDIR/kubelet.yaml" \
    --kubeconfig "$NDIR/kubelet.kubeconfig" --root-dir /var/lib/kubelet --cert-dir "$NDIR/kubelet-pki" \
    --hostname-override "$N" --node-ip "$NIP" --node-labels "$labels" --v 1
  real_spawn kube-proxy "$K8S_NODE_BIN/kube-proxy" --config "$NDIR/kube-proxy.yaml"
  KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$R_API \
    real_spawn kube-network-policies "$KNP_BIN/kube-network-policies" --hostname-override "$N" --disable-nri --metrics-bind-address 127.0.0.1:9080 --v 1
}

# Waits for every node, then advertises its extended resources (the kubelet must have registered it).
finish_real_node() {
  local json=$1 extended
  real_node_vars "$json"
  extended=$(jq -c .extended <<<"$json")
  wait_for "$N registered" kubectl_r "$NR" get node "$N" || { tail -n 20 "$LOGS/real/$N/kubelet.log" >&2; return 1; }
  wait_for "$N Ready with $extended" bash -c "$(declare -f real_node_ready real_advertise kubectl_r); \
    K8S_BIN='$K8S_BIN' SANDBOX_DIR='$SANDBOX_DIR' N='$N' NR='$NR'; \
    real_advertise '$extended'; real_node_ready '$extended'" || {
    tail -n 20 "$LOGS/real/$N/kubelet.log" >&2; return 1; }
  local c
  for c in "${REAL_COMPONENTS[@]}"; do
    real_alive "$N" "$c" || { tail -n 20 "$LOGS/real/$N/$c.log" >&2; die "real node $N: $c exited"; }
  done
}

start_real_nodes() {
  if ! real_nodes_enabled; then
    [[ $(id -u) == 0 || -n ${GPUCLOUD_SANDBOX_REAL_NODES:-} ]] ||
      log "real nodes skipped: they need root (network and mount namespaces); kwok nodes only"
    return 0
  fi
  [[ $(id -u) == 0 ]] || die "real nodes need root (network and mount namespaces); GPUCLOUD_SANDBOX_REAL_NODES=0 skips them"
  ensure_debian_packages "${REAL_NODE_PACKAGES[@]}"
  local t0=$SECONDS json nodes=() names=()
  mapfile -t nodes < <(real_fleet)
  [[ ${#nodes[@]} -gt 0 ]] || return 0
  for json in "${nodes[@]}"; do names+=("$(jq -r .name <<<"$json")"); done
  if [[ ! -f $K8S_NODE_BIN/.complete || ! -f $CONTAINERD_BIN/.complete || ! -f $RUNC_BIN/.complete ||
        ! -f $CNI_BIN/.complete || ! -f $KNP_BIN/.complete ]]; then
    "$SANDBOX_SRC/build.sh" real-nodes 8>&-
  fi
  bash "$SANDBOX_SRC/certs.sh" "$PKI" "${names[@]}"
  real_host_network
  real_images || die "the sandbox's images could not be built or pushed (logs: $LOGS/real)"
  local r
  for r in $(printf '%s\n' "${nodes[@]}" | jq -r .region | sort -u); do set_region_vars "$r"; real_rbac; done
  for json in "${nodes[@]}"; do start_real_node "$json" || return 1; done
  for json in "${nodes[@]}"; do finish_real_node "$json" || return 1; done
  log "real nodes ready in $((SECONDS - t0)) s: ${names[*]}"
}

# Stops a node: its processes, the containers its shims keep running, its cgroups and namespaces.
stop_real_node() {
  local json=$1 c f pid pids=() n
  real_node_vars "$json"
  for c in kubelet kube-proxy kube-network-policies netns_forward.py containerd; do
    f=$(real_pidfile "$N" "$c")
    [[ -f $f ]] || continue
    if real_alive "$N" "$c"; then pid=$(<"$f"); kill "$pid" 2>/dev/null && pids+=("$pid"); fi
    rm -f "$f"
  done
  # containerd's shims outlive containerd: they and the containers go by the node's socket and cgroups.
  pkill -9 -f -- "containerd-shim-runc-v2 .*-address $NDIR/containerd.sock" 2>/dev/null || true
  local cg procs
  for cg in /sys/fs/cgroup/*/"$NCG"; do
    [[ -d $cg ]] || continue
    procs=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z $procs ]] || kill -9 $procs 2>/dev/null || true
  done
  for n in $(seq 50); do
    local left=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    pids=("${left[@]}")
    [[ ${#pids[@]} -eq 0 ]] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for cg in /sys/fs/cgroup/*/"$NCG"; do
    [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  umount "/run/gpucloud-sandbox/$NNS.mnt" 2>/dev/null || true
  rm -f "/run/gpucloud-sandbox/$NNS.mnt" "$NDIR/mnt.ns"
  ip netns del "$NNS" 2>/dev/null || true
  ip route del "$NPODS" 2>/dev/null || true
  # The kubelet's and containerd's state of a stopped node is no use to the next start.
  rm -rf "$NDIR/containerd-root" "$NDIR/containerd-state" "$NDIR/kubelet" "$NDIR/runc" "$NDIR/cni-ipam" \
    2>/dev/null || true
}

stop_real_nodes() {
  [[ -d $REAL_BASE ]] || return 0
  local json
  while read -r json; do
    [[ -n $json ]] && stop_real_node "$json"
  done < <(fleet real-nodes)  # every region's: a stop stops the whole instance
  stop_registry "$REAL_BASE/registry" 2>/dev/null || true
  ip netns del "$REAL_INET_NS" 2>/dev/null || true
  ip link del "$REAL_BRIDGE" 2>/dev/null || true
  nft delete table ip "$REAL_NFT_TABLE" 2>/dev/null || true
}

# What tests and tools need to know of the real nodes (sandbox.json "real_nodes").
real_nodes_json() {
  local nodes
  nodes=$(real_fleet | jq -sc --arg net "$REAL_NODE_NET" --arg pods "$REAL_POD_NET" --arg inst "$SANDBOX_INSTANCE" \
    'map({name, region, zone, address: "\($net).\(11 + .index)", pod_cidr: "\($pods).\(.index).0/24",
          netns: "gpucloud-\($inst)-\(.name)"})')
  jq -nc --argjson nodes "$nodes" --arg inet "$REAL_INET_IP" --arg inetns "$REAL_INET_NS" \
    --arg registry "$REAL_REGISTRY" --arg host "$REAL_HOST_IP" --arg tools "$(cat "$REAL_BASE/tools-image" 2>/dev/null)" \
    '{nodes: $nodes, internet: {address: $inet, netns: $inetns}, registry: $registry, host_address: $host,
      tools_image: $tools}'
}

real_nodes_status() {  # one line per real node; returns 1 if one is down
  real_nodes_enabled || return 0
  local json c state ok=0
  while read -r json; do
    real_node_vars "$json"
    state=""
    for c in "${REAL_COMPONENTS[@]}"; do
      if real_alive "$N" "$c"; then state+=" $c:$(<"$(real_pidfile "$N" "$c")")"; else state+=" $c:down"; ok=1; fi
    done
    echo "  real node $N ($NR, $NIP)$state"
  done < <(real_fleet)
  return $ok
}

# The instance's local registry, with the pause image, the stand-ins for the catalog's images and the
# platform's instance tools (its SSH server), pushed again at every start (the registry keeps manifests in
# memory only).
real_images() {
  # shellcheck source=images.sh
  . "$SANDBOX_SRC/images.sh"
  local sshd
  sshd=$("$SANDBOX_SRC/build.sh" gpucloud-sshd 8>&- 9>&-) || return 1
  build_instance_rootfs >/dev/null || return 1
  start_registry "$REAL_REGISTRY" "$REAL_BASE/registry" "$LOGS/real" || return 1
  push_sandbox_images "$REAL_REGISTRY" "$sshd" "$REAL_BASE/tools-image" >/dev/null || return 1
}
