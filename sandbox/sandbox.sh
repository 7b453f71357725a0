#!/usr/bin/env bash
# Starts, stops and inspects the sandbox: one real Kubernetes control plane per region of
# sandbox/fleet.yaml (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) plus kwok
# simulating the region's GPU nodes, and sandbox/provisioner.py simulating a storage driver for the
# StorageClass $GPUCLOUD_SANDBOX_STORAGE_CLASS (sandbox-standard). Everything listens on 127.0.0.1.
#
#   sandbox.sh start     build missing binaries, start every region (reuses a running sandbox), and
#                        install the chart's operator RBAC and admission policy for the restricted
#                        identities gpucloud-operator and gpucloud-logs (docs/sandbox.md, "Identities")
#   sandbox.sh stop      stop every process by its PID file
#   sandbox.sh reset [--force]   start the instance afresh (stop, then start with empty etcd: no namespace,
#                        pod or object of earlier runs is left) once no test session uses it; `make test`
#                        runs it on the test instance. The default instance (make run's) only with --force
#   sandbox.sh status    show each region's processes and /readyz (exit 1 if not all up)
#   sandbox.sh env       print shell exports (KUBECONFIG, GPUCLOUD_SANDBOX_KUBECONFIG_<REGION>...)
#   sandbox.sh dir       print the instance's state directory
#   sandbox.sh kubectl ARGS...   the built kubectl on the merged kubeconfig (--context REGION picks one)
#
# Settings (environment):
#   GPUCLOUD_SANDBOX_INSTANCE           which sandbox (default `default`, make run's; make test uses `test`);
#                                       each has its own state directory, ports and processes (instance.sh)
#   GPUCLOUD_SANDBOX_SLOT               port block of an instance not named in instance.sh
#   GPUCLOUD_SANDBOX_DIR                state: pki/, kubeconfig, sandbox.json, <region>/, logs/
#                                       (default ~/.cache/gpucloud/sandbox, or sandbox-<instance>)
#   GPUCLOUD_CACHE_DIR                  binary cache (default ~/.cache/gpucloud; bin/<component>-<version>/)
# Ports, each plus 100 per slot of the instance (slot 0, `default`, as shown; `test` is slot 1: 16543...):
#   GPUCLOUD_SANDBOX_APISERVER_PORT     kube-apiserver of region i listens on this + i       (16443)
#   GPUCLOUD_SANDBOX_ETCD_PORT          etcd client port of region i: this + 10*i, peer +1   (23790)
#   GPUCLOUD_SANDBOX_CONTROLLER_MANAGER_PORT  controller-manager /healthz: this + 10*i        (17257)
#   GPUCLOUD_SANDBOX_SCHEDULER_PORT     scheduler /healthz: this + 10*i                      (17259)
#   GPUCLOUD_SANDBOX_FLEET              fleet file (default sandbox/fleet.yaml)
#   GPUCLOUD_SANDBOX_REGIONS            space-separated subset of the fleet's regions to run (default all)
#   GPUCLOUD_SANDBOX_TIMEOUT            seconds to wait for each readiness step (default 180)
#   GPUCLOUD_SANDBOX_RESET_WAIT         seconds `reset` waits for running test sessions to end (default 900)
#   GPUCLOUD_SANDBOX_STORAGE_CLASS      the StorageClass of volumes (default sandbox-standard)
#   GPUCLOUD_SANDBOX_SERVICE_CIDR       Service ClusterIP range (default 10.0.0.0/24: about 250 instances;
#                                       each instance has a NodePort Service; the benchmarks use a /16)
#   GPUCLOUD_SANDBOX_NODE_PORT_RANGE    NodePort range (default 30000-32767, the apiserver's own)
#   GPUCLOUD_SANDBOX_PYTHON             python with the kubernetes client for the provisioner
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# shellcheck source=instance.sh
. "$SANDBOX_SRC/instance.sh"  # SANDBOX_INSTANCE, SANDBOX_DIR, instance_port
APISERVER_PORT=$(instance_port "${GPUCLOUD_SANDBOX_APISERVER_PORT:-16443}")
ETCD_PORT=$(instance_port "${GPUCLOUD_SANDBOX_ETCD_PORT:-23790}")
CM_PORT=$(instance_port "${GPUCLOUD_SANDBOX_CONTROLLER_MANAGER_PORT:-17257}")
SCHED_PORT=$(instance_port "${GPUCLOUD_SANDBOX_SCHEDULER_PORT:-17259}")
TIMEOUT="${GPUCLOUD_SANDBOX_TIMEOUT:-180}"
PKI="$SANDBOX_DIR/pki"
LOGS="$SANDBOX_DIR/logs"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

# Volumes: the StorageClass every region gets, served by sandbox/provisioner.py (a simulated provisioner:
# no CSI driver can run on kwok nodes). sandbox/fleet.yaml names it for the catalog's regions.
STORAGE_CLASS="${GPUCLOUD_SANDBOX_STORAGE_CLASS:-sandbox-standard}"

# Python for the fleet expander: the system one (needs PyYAML: Debian's python3-yaml).
pick_python() {
  local p
  for p in ${GPUCLOUD_SANDBOX_PYTHON:-} /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then echo "$p"; return; fi
  done
  die "no python3 with PyYAML found for sandbox/fleet.py (apt-get install python3-yaml)"
}
# Python for the provisioner: one with the kubernetes client (the project's virtualenv).
pick_provisioner_python() {
  local p
  for p in ${GPUCLOUD_SANDBOX_PYTHON:-} "$SANDBOX_SRC/../.venv/bin/python" python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import kubernetes' 2>/dev/null; then echo "$p"; return; fi
  done
  die "no python with the kubernetes client for sandbox/provisioner.py (set GPUCLOUD_SANDBOX_PYTHON)"
}
PY=""
fleet() { [[ -n $PY ]] || PY=$(pick_python); "$PY" "$SANDBOX_SRC/fleet.py" "$@"; }

ALL_REGIONS=()
all_regions() {
  [[ ${#ALL_REGIONS[@]} -gt 0 ]] || mapfile -t ALL_REGIONS < <(fleet regions)
  printf '%s\n' "${ALL_REGIONS[@]}"
}
regions() {
  if [[ -n ${GPUCLOUD_SANDBOX_REGIONS:-} ]]; then tr ' ' '\n' <<<"$GPUCLOUD_SANDBOX_REGIONS"; else all_regions; fi
}

# Index of a region in the fleet file: fixes its ports whatever subset runs.
region_index() {
  local i
  all_regions >/dev/null
  for i in "${!ALL_REGIONS[@]}"; do [[ ${ALL_REGIONS[$i]} == "$1" ]] && { echo "$i"; return; }; done
  die "unknown region $1"
}

set_region_vars() {  # sets R, RDIR, IDX and the region's ports
  R=$1
  RDIR="$SANDBOX_DIR/$R"
  IDX=$(region_index "$R") || exit 1
  R_API=$((APISERVER_PORT + IDX))
  R_ETCD=$((ETCD_PORT + 10 * IDX))
  R_PEER=$((R_ETCD + 1))
  R_CM=$((CM_PORT + 10 * IDX))
  R_SCHED=$((SCHED_PORT + 10 * IDX))
  # etcd data on tmpfs where there is one; --unsafe-no-fsync in any case.
  if [[ -d /dev/shm && -w /dev/shm ]]; then
    R_ETCD_DATA="/dev/shm/gpucloud-sandbox-$(id -u)-$(printf '%s' "$SANDBOX_DIR" | cksum | cut -d' ' -f1)/$R"
  else
    R_ETCD_DATA="$RDIR/etcd-data"
  fi
}

pidfile() { echo "$SANDBOX_DIR/$1/pids/$2.pid"; }

# alive REGION COMPONENT: the PID file names a live process running that component's binary.
alive() {
  local f pid
  f=$(pidfile "$1" "$2")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "/$2 " || return 1
}

curl_api() {  # curl_api PORT PATH
  curl -sS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$1$2" 2>/dev/null
}

api_ready() { [[ $(curl_api "$1" /readyz) == ok ]]; }

region_running() {
  set_region_vars "$1"
  local c
  for c in "${COMPONENTS[@]}"; do alive "$R" "$c" || return 1; done
  api_ready "$R_API"
}

kubectl_r() { "$K8S_BIN/kubectl" --kubeconfig "$SANDBOX_DIR/$1/kubeconfig" "${@:2}"; }

# wait_for WHAT COMMAND...: retries COMMAND every second until it succeeds or TIMEOUT passes.
# With WATCH="REGION COMPONENT" set, gives up at once if that component's process has exited.
wait_for() {
  local what=$1; shift
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [[ -n ${WATCH:-} ]] && ! alive $WATCH; then
      log "${WATCH#* } of ${WATCH%% *} exited while waiting for $what; last lines of its log:"
      tail -n 15 "$LOGS/${WATCH%% *}/${WATCH#* }.log" >&2
      return 1
    fi
    if (( SECONDS - start > TIMEOUT )); then
      log "timed out after ${TIMEOUT}s waiting for $what (logs: $LOGS)"
      return 1
    fi
    sleep 1
  done
  log "  $what ($((SECONDS - start)) s)"
}

# spawn REGION COMPONENT ARGS...: starts the component's binary detached, logging to logs/REGION/COMPONENT.log (truncated).
spawn() {
  local region=$1 comp=$2; shift 2
  local bin
  case $comp in
    etcd) bin="$ETCD_BIN/etcd" ;;
    kwok) bin="$KWOK_BIN/kwok" ;;
    *) bin="$K8S_BIN/$comp" ;;
  esac
  mkdir -p "$LOGS/$region" "$SANDBOX_DIR/$region/pids"
  # 8>&- 9>&-: the daemon must not inherit the locks held on fds 8 (reset) and 9 (start).
  setsid "$bin" "$@" >"$LOGS/$region/$comp.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$(pidfile "$region" "$comp")"
}

kubeconfig() {  # kubeconfig FILE PORT USER CLUSTERNAME
  local file=$1 port=$2 user=$3 name=$4
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name-$user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: $name
  context: {cluster: $name, user: $name-$user}
current-context: $name
EOF
  chmod 600 "$file"
}

write_region_config() {
  mkdir -p "$RDIR" "$LOGS/$R"
  kubeconfig "$RDIR/kubeconfig" "$R_API" admin "$R"
  kubeconfig "$RDIR/controller-manager.kubeconfig" "$R_API" controller-manager "$R"
  kubeconfig "$RDIR/scheduler.kubeconfig" "$R_API" scheduler "$R"
  cat >"$RDIR/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $RDIR/scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF
  sed '/^#/d' "$SANDBOX_SRC/scheduler-profiles.yaml" >>"$RDIR/scheduler.yaml"
  kwok_config >"$RDIR/kwok.yaml"
}

# kwok_config: kwok's configuration on stdout: the Stage objects shipped in kwok's module (copied next to
# the binary at build time), then the sandbox's own stages (sandbox/stages/*.yaml, e.g. image pull failures).
# Options go on the command line: a KwokConfiguration document here would replace kwok's defaults
# (e.g. nodeLeaseParallelism becomes 0 and kwok exits).
kwok_config() {
  local s first=1
  for s in "$KWOK_BIN"/stages/{node-initialize,node-heartbeat-with-lease,pod-ready,pod-complete,pod-delete}.yaml \
    "$SANDBOX_SRC"/stages/*.yaml; do
    [[ $first == 1 ]] || echo "---"
    first=0
    cat "$s"
  done
}

# refresh_kwok: in a running region, restarts kwok alone when its stages changed (the control plane, its
# etcd data and the pods stay; kwok picks the pods up again), so `start` applies new stages without a wipe.
refresh_kwok() {
  kwok_config >"$RDIR/kwok.yaml.new"
  if cmp -s "$RDIR/kwok.yaml.new" "$RDIR/kwok.yaml"; then rm -f "$RDIR/kwok.yaml.new"; return; fi
  mv "$RDIR/kwok.yaml.new" "$RDIR/kwok.yaml"
  local f pid n
  f=$(pidfile "$R" kwok)
  if alive "$R" kwok; then
    pid=$(<"$f")
    log "region $R: kwok stages changed, restarting kwok (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for n in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  start_kwok
}

start_etcd() {
  rm -rf "$R_ETCD_DATA"
  mkdir -p "$R_ETCD_DATA"
  spawn "$R" etcd --name "$R" --data-dir "$R_ETCD_DATA" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$R_ETCD" --advertise-client-urls "http://127.0.0.1:$R_ETCD" \
    --listen-peer-urls "http://127.0.0.1:$R_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$R_PEER" \
    --initial-cluster "$R=http://127.0.0.1:$R_PEER" --initial-cluster-state new \
    --quota-backend-bytes 2147483648 --log-level warn
}

# Gang scheduling (docs/clusters.md "Placement"): Kubernetes 1.35's Workload API, alpha, needs the
# GenericWorkload gate on the apiserver, the controller manager and the scheduler, the GangScheduling gate
# on the scheduler (which then runs the plugin), and the API group served.
GANG_GATES="GenericWorkload=true,GangScheduling=true"

start_apiserver() {
  spawn "$R" kube-apiserver \
    --feature-gates "$GANG_GATES" --runtime-config scheduling.k8s.io/v1alpha1=true \
    --etcd-servers "http://127.0.0.1:$R_ETCD" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$R_API" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "${GPUCLOUD_SANDBOX_SERVICE_CIDR:-10.0.0.0/24}" \
    --service-node-port-range "${GPUCLOUD_SANDBOX_NODE_PORT_RANGE:-30000-32767}" \
    --authorization-mode Node,RBAC \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false
}

start_controllers() {
  spawn "$R" kube-controller-manager \
    --kubeconfig "$RDIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$RDIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$RDIR/controller-manager.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$R_CM" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --cluster-name "$R" --profiling=false --feature-gates "$GANG_GATES"
  spawn "$R" kube-scheduler --config "$RDIR/scheduler.yaml" --feature-gates "$GANG_GATES" \
    --authentication-kubeconfig "$RDIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$RDIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$R_SCHED" --profiling=false
  start_kwok
}

start_kwok() {
  spawn "$R" kwok --kubeconfig "$RDIR/kubeconfig" --config "$RDIR/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds 40 --cidr "10.$((244 + IDX)).0.0/16"
}

apply_storage_class() {
  kubectl_r "$R" apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
  labels: {gpucloud.io/sandbox: "true"}
provisioner: sandbox.gpucloud.io/hostpath
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
EOF
}

# ensure_provisioner: the region's provisioner runs (restarted when provisioner.py changed since it started).
ensure_provisioner() {
  local f pid n
  f=$(pidfile "$R" provisioner.py)
  if alive "$R" provisioner.py; then
    [[ $SANDBOX_SRC/provisioner.py -nt $f ]] || return 0
    pid=$(<"$f")
    log "region $R: provisioner.py changed, restarting it (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  mkdir -p "$LOGS/$R" "$SANDBOX_DIR/$R/pids" "$SANDBOX_DIR/$R/volumes"
  setsid "$(pick_provisioner_python)" "$SANDBOX_SRC/provisioner.py" --kubeconfig "$SANDBOX_DIR/$R/kubeconfig" \
    --storage-class "$STORAGE_CLASS" --data-dir "$SANDBOX_DIR/$R/volumes" \
    >"$LOGS/$R/provisioner.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$f"
}

# The operator's and the console's identities: client certificates of users without groups, bound by the
# chart's own RBAC and held by its admission policy (helm/gpucloud/templates/operator-{rbac,policy}.yaml),
# rendered with helm as release `gpucloud` in namespace `sandbox`, so that the tests and `make run` drive
# the sandbox with exactly the rights a production operator has, not the administrator's.
RBAC_NAMESPACE=sandbox
OPERATOR_USER=gpucloud-operator
LOGS_USER=gpucloud-logs

render_rbac() {  # the chart's RBAC and policy for the sandbox's identities, into $SANDBOX_DIR/rbac.yaml
  "$HELM_BIN/helm" template gpucloud "$SANDBOX_SRC/../helm/gpucloud" --namespace "$RBAC_NAMESPACE" \
    --kube-version "${K8S_VERSION#v}" \
    --show-only templates/operator-rbac.yaml --show-only templates/operator-policy.yaml \
    --set "rbac.operatorUsers={$OPERATOR_USER}" --set "rbac.logsUsers={$LOGS_USER}" \
    >"$SANDBOX_DIR/rbac.yaml.tmp"
  mv "$SANDBOX_DIR/rbac.yaml.tmp" "$SANDBOX_DIR/rbac.yaml"
}

# policy_active: the admission policy refuses the operator a write outside gpucloud's namespaces (a server
# dry run, so nothing is written either way); policies take a moment to load after they are applied.
policy_active() {
  local out
  out=$("$K8S_BIN/kubectl" --kubeconfig "$RDIR/operator.kubeconfig" -n default create secret generic \
    sandbox-policy-probe --dry-run=server 2>&1) && return 1
  grep -q 'managed-by=gpucloud' <<<"$out"
}

apply_identities() {  # the region's operator and logs kubeconfigs, and the chart's RBAC for them
  kubeconfig "$RDIR/operator.kubeconfig" "$R_API" operator "$R"
  kubeconfig "$RDIR/logs.kubeconfig" "$R_API" logs "$R"
  kubectl_r "$R" apply -f "$SANDBOX_DIR/rbac.yaml" >/dev/null
  WATCH="$R kube-apiserver" wait_for "$R admission policy for $OPERATOR_USER" policy_active
}

apply_fleet() {  # (re)applies the region's nodes when the fleet changed or a node is missing
  fleet nodes "$R" >"$RDIR/nodes.json"
  if cmp -s "$RDIR/nodes.json" "$RDIR/nodes.applied.json" && nodes_ready; then return; fi
  kubectl_r "$R" apply -f "$RDIR/nodes.json" >/dev/null
  cp "$RDIR/nodes.json" "$RDIR/nodes.applied.json"
}

nodes_ready() {  # every node of the region's fleet file is Ready
  local want have
  want=$(grep -c '"kind": "Node"' "$RDIR/nodes.json")
  have=$(kubectl_r "$R" get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)
  (( have >= want ))
}

# stop_regions REGION...: SIGTERM to every live component (all regions at once), SIGKILL to those
# still alive after 15 s; removes the PID files and the regions' etcd data.
stop_regions() {
  local region c f pid pids=() n
  for region in "$@"; do
    for c in provisioner.py kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
      f=$(pidfile "$region" "$c")
      [[ -f $f ]] || continue
      if alive "$region" "$c"; then
        pid=$(<"$f")
        kill "$pid" 2>/dev/null && pids+=("$pid") && log "stopping $region $c (pid $pid)"
      fi
      rm -f "$f"
    done
  done
  for n in $(seq 75); do
    local left=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    pids=("${left[@]}")
    [[ ${#pids[@]} -eq 0 ]] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for region in "$@"; do
    if grep -qx -- "$region" < <(all_regions); then
      set_region_vars "$region"
      rm -rf "$R_ETCD_DATA"
      rmdir "$(dirname "$R_ETCD_DATA")" 2>/dev/null || true
    fi
  done
}

write_index() {  # sandbox.json, sandbox.env and a merged kubeconfig with one context per region
  local rs=("$@") r first=1 json env
  json="{\n  \"instance\": \"$SANDBOX_INSTANCE\",\n  \"slot\": $SANDBOX_SLOT,\n  \"dir\": \"$SANDBOX_DIR\",\n  \"kubeconfig\": \"$SANDBOX_DIR/kubeconfig\",\n  \"default_region\": \"${rs[0]}\",\n  \"regions\": {"
  # For kubectl and the like in a shell. No GPUCLOUD_SANDBOX_* here: a shell that evaluated the default
  # instance's env must not turn the tests it then runs onto that instance.
  env="export KUBECONFIG=\"$SANDBOX_DIR/kubeconfig\"\n"
  for r in "${rs[@]}"; do
    set_region_vars "$r"
    [[ $first == 1 ]] || json+=","
    first=0
    json+="\n    \"$r\": {\"kubeconfig\": \"$RDIR/kubeconfig\", \"operator_kubeconfig\": \"$RDIR/operator.kubeconfig\", \"logs_kubeconfig\": \"$RDIR/logs.kubeconfig\", \"server\": \"https://127.0.0.1:$R_API\", \"sandbox\": true, \"logs\": \"$LOGS/$r\"}"
    env+="export GPUCLOUD_SANDBOX_KUBECONFIG_$(tr 'a-z-' 'A-Z_' <<<"$r")=\"$RDIR/kubeconfig\"\n"
  done
  json+="\n  }"
  real_nodes_enabled && json+=",\n  \"real_nodes\": $(real_nodes_json)"
  json+="\n}\n"
  printf "$json" >"$SANDBOX_DIR/sandbox.json.tmp" && mv "$SANDBOX_DIR/sandbox.json.tmp" "$SANDBOX_DIR/sandbox.json"
  printf "$env" >"$SANDBOX_DIR/sandbox.env"
  local files=()
  for r in "${rs[@]}"; do files+=("$SANDBOX_DIR/$r/kubeconfig"); done
  KUBECONFIG=$(IFS=:; echo "${files[*]}") "$K8S_BIN/kubectl" config view --flatten >"$SANDBOX_DIR/kubeconfig.tmp"
  "$K8S_BIN/kubectl" --kubeconfig "$SANDBOX_DIR/kubeconfig.tmp" config use-context "${rs[0]}" >/dev/null
  chmod 600 "$SANDBOX_DIR/kubeconfig.tmp"
  mv "$SANDBOX_DIR/kubeconfig.tmp" "$SANDBOX_DIR/kubeconfig"
}

cmd_start() {
  local t0=$SECONDS r
  claim_sandbox_dir
  mkdir -p "$LOGS"
  exec 9>"$SANDBOX_DIR/start.lock"
  flock -w 900 9 || die "another sandbox.sh holds $SANDBOX_DIR/start.lock"
  # Build whatever the cluster needs and is not cached yet (a no-op when it is).
  if [[ ! -f $K8S_BIN/.complete || ! -f $ETCD_BIN/.complete || ! -f $KWOK_BIN/.complete ]]; then
    "$SANDBOX_SRC/build.sh" etcd kwok kubernetes 8>&-
  fi
  # helm renders the chart's RBAC for the sandbox's identities (apply_identities).
  [[ -f $HELM_BIN/.complete ]] || "$SANDBOX_SRC/build.sh" helm 8>&-
  mapfile -t RS < <(regions)
  [[ ${#RS[@]} -gt 0 ]] || die "no regions in the fleet"
  local todo=()
  for r in "${RS[@]}"; do
    if region_running "$r"; then
      log "region $r: already running (https://127.0.0.1:$R_API), reusing it"
      refresh_kwok
    else
      stop_regions "$r"
      todo+=("$r")
    fi
  done
  # Idempotent: makes only missing files (a running sandbox gets the identities' certificates too).
  bash "$SANDBOX_SRC/certs.sh" "$PKI"
  render_rbac
  if [[ ${#todo[@]} -gt 0 ]]; then
    log "starting region(s) ${todo[*]} in $SANDBOX_DIR (logs: $LOGS)"
    for r in "${todo[@]}"; do set_region_vars "$r"; write_region_config; start_etcd; done
    for r in "${todo[@]}"; do
      set_region_vars "$r"
      WATCH="$r etcd" wait_for "$r etcd healthy on 127.0.0.1:$R_ETCD" \
        bash -c "curl -sS --max-time 2 http://127.0.0.1:$R_ETCD/health | grep -q '\"health\":\"true\"'" || exit 1
      start_apiserver
    done
    for r in "${todo[@]}"; do
      set_region_vars "$r"
      WATCH="$r kube-apiserver" wait_for "$r kube-apiserver /readyz on https://127.0.0.1:$R_API" \
        api_ready "$R_API" || { tail -n 20 "$LOGS/$r/kube-apiserver.log" >&2; exit 1; }
      start_controllers
    done
  fi
  for r in "${RS[@]}"; do
    set_region_vars "$r"
    apply_fleet
    WATCH="$r kwok" wait_for "$r nodes Ready" nodes_ready || exit 1
    WATCH="$r kube-controller-manager" wait_for "$r default ServiceAccount" \
      kubectl_r "$r" -n default get serviceaccount default || exit 1
    for c in "${COMPONENTS[@]}"; do alive "$r" "$c" || die "$r $c exited (log: $LOGS/$r/$c.log)"; done
    apply_storage_class
    ensure_provisioner
    apply_identities
  done
  start_real_nodes || die "real nodes did not start (logs: $LOGS/real; GPUCLOUD_SANDBOX_REAL_NODES=0 skips them)"
  write_index "${RS[@]}"
  log "sandbox instance $SANDBOX_INSTANCE ready in $((SECONDS - t0)) s: ${RS[*]}"
  log "  kubeconfig: $SANDBOX_DIR/kubeconfig (contexts: ${RS[*]}); per region: $SANDBOX_DIR/<region>/kubeconfig"
  log "  kubectl:    $K8S_BIN/kubectl"
}

cmd_stop() {
  [[ -d $SANDBOX_DIR ]] || { log "no sandbox instance $SANDBOX_INSTANCE in $SANDBOX_DIR"; return; }
  exec 9>"$SANDBOX_DIR/start.lock"
  flock -w 900 9 || die "another sandbox.sh holds $SANDBOX_DIR/start.lock"
  local d rs=()
  for d in "$SANDBOX_DIR"/*/pids; do
    [[ -d $d ]] && rs+=("$(basename "$(dirname "$d")")")
  done
  stop_real_nodes
  [[ ${#rs[@]} -eq 0 ]] || stop_regions "${rs[@]}"
  rm -f "$SANDBOX_DIR/sandbox.json"
  log "sandbox instance $SANDBOX_INSTANCE stopped"
}

# cmd_reset [--force]: the instance afresh: stopped, then started with empty etcd (so no namespace, pod,
# node or cluster-wide object of an earlier run is left, and a changed sandbox.sh takes effect), once no test
# session uses it. Test sessions (tests/fixtures/kube.py) hold sessions.lock shared for as long as they
# run; reset takes it exclusively, waiting up to GPUCLOUD_SANDBOX_RESET_WAIT seconds, so it never pulls a
# cluster from under a running session. The default instance is make run's: only with --force.
cmd_reset() {
  if [[ $SANDBOX_INSTANCE == default && ${1:-} != --force ]]; then
    die "refusing to reset the default instance (make run's); reset the test instance with" \
      "GPUCLOUD_SANDBOX_INSTANCE=test, or pass --force"
  fi
  local patience="${GPUCLOUD_SANDBOX_RESET_WAIT:-900}"
  mkdir -p "$SANDBOX_DIR"
  exec 8>>"$SANDBOX_DIR/sessions.lock"
  if ! flock -n 8; then
    log "instance $SANDBOX_INSTANCE: waiting up to ${patience}s for its test sessions to end (sessions.lock)"
    flock -w "$patience" 8 || die "instance $SANDBOX_INSTANCE: a test session still uses it after ${patience}s; not reset"
  fi
  log "instance $SANDBOX_INSTANCE: resetting (stop, then start with empty etcd)"
  cmd_stop
  cmd_start
}

cmd_status() {
  local ok=0 r c state
  echo "instance $SANDBOX_INSTANCE (slot $SANDBOX_SLOT) in $SANDBOX_DIR"
  while read -r r; do
    set_region_vars "$r"
    state=""
    for c in "${COMPONENTS[@]}"; do
      if alive "$r" "$c"; then state+=" $c:$(<"$(pidfile "$r" "$c")")"; else state+=" $c:down"; ok=1; fi
    done
    if alive "$r" provisioner.py; then
      state+=" provisioner:$(<"$(pidfile "$r" provisioner.py)")"
    else
      state+=" provisioner:down"; ok=1
    fi
    if api_ready "$R_API"; then state+=" readyz:ok"; else state+=" readyz:no"; ok=1; fi
    echo "$r https://127.0.0.1:$R_API$state"
  done < <(regions)
  real_nodes_status || ok=1
  return $ok
}

# shellcheck source=realnodes.sh
. "$SANDBOX_SRC/realnodes.sh"

all_regions >/dev/null  # read the fleet once
case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  reset) cmd_reset "${@:2}" ;;
  status) cmd_status ;;
  dir) echo "$SANDBOX_DIR" ;;
  kubectl)
    [[ -f $SANDBOX_DIR/kubeconfig ]] || die "sandbox not started (sandbox.sh start)"
    exec "$K8S_BIN/kubectl" --kubeconfig "$SANDBOX_DIR/kubeconfig" "${@:2}" ;;
  env) [[ -f $SANDBOX_DIR/sandbox.env ]] && cat "$SANDBOX_DIR/sandbox.env" || die "sandbox not started" ;;
  *) echo "usage: $0 start|stop|reset [--force]|status|env|dir|kubectl ARGS..." >&2; exit 2 ;;
esac
