# The real nodes' images and the local registry that serves them (docs/sandbox.md, "Images and the local
# registry"). Sourced by the node scripts after common.sh; defines functions only. Each function logs what it
# does and returns non-zero on failure (it never exits the caller's shell).
#
#   build_instance_rootfs                       -> prints the cached rootfs tar of the instance image
#   build_tools_layer SSHD_BINARY               -> prints the cached layer tar holding /gpucloud-sshd
#   start_registry ADDR STATE_DIR LOG_DIR       crane registry serve, PID file STATE_DIR/registry.pid
#   stop_registry STATE_DIR
#   push_sandbox_images ADDR SSHD_BINARY [REF_FILE]
#                                               pushes every image; prints the tools image reference (and
#                                               writes it to REF_FILE when given)
# The registry keeps blobs on disk (STATE_DIR/registry-blobs) but manifests in memory only (crane's
# pkg/registry), so push_sandbox_images runs after every start_registry; with the blobs there it is quick.

IMAGES_CACHE="$GPUCLOUD_CACHE_DIR/images"
REGISTRY_TIMEOUT="${REGISTRY_TIMEOUT:-30}"
# What the instance image holds beyond the apt variant (Essential: yes packages and apt). The cache key is a
# hash of this list, the suite, the options and the user hook below: changing any of them builds a new rootfs.
INSTANCE_PACKAGES=(python3 openssh-client openmpi-bin python3-mpi4py iproute2 procps netcat-openbsd
  ca-certificates bash iputils-ping less)
# Documentation and translations are most of a minimal image's size; the copyright files stay.
INSTANCE_DPKG_OPTS=(path-exclude=/usr/share/doc/* path-include=/usr/share/doc/*/copyright
  path-exclude=/usr/share/man/* path-exclude=/usr/share/info/* path-exclude=/usr/share/locale/*
  path-include=/usr/share/locale/locale.alias)
# No device nodes in the tar (the runtime gives a container its /dev).
INSTANCE_MMDEBSTRAP_OPTS=(--variant=apt --skip=output/dev)
# A passwd and group entry for the uid instances run as (1000, apps/operator/manifests.py RUN_AS), as images
# with a user of their own have one (Jupyter's jovyan, Ubuntu's ubuntu): the OpenSSH client refuses to run
# for a uid without one ("No user exists for uid 1000"), and mpirun starts its daemons on a cluster's other
# nodes with it (docs/clusters.md).
# shellcheck disable=SC2016  # $1 is the hook's argument (the rootfs), expanded by mmdebstrap's shell
INSTANCE_USER_HOOK='echo "gpucloud:x:1000:1000::/home/gpucloud:/bin/bash" >>"$1/etc/passwd" && echo "gpucloud:x:1000:" >>"$1/etc/group"'
# The catalog's stock images (apps/catalog/catalog_seed.py, IMAGES) are aliases of the instance image: a
# node's containerd asks the local registry for the same repository path (registry host dropped).
CATALOG_ALIASES=(nvidia/cuda:12.4.1-base-ubuntu22.04 nvidia/pytorch:24.08-py3
  jupyter/pytorch-notebook:cuda12-python-3.11)
JUPYTER_ALIAS=jupyter/pytorch-notebook:cuda12-python-3.11  # gets start-notebook.py on top (below)
INSTANCE_REPO=gpucloud/instance-debian
TOOLS_REPO=gpucloud/instance-tools
PAUSE_REF=pause:3.10  # containerd's pinned sandbox image registry.k8s.io/pause:3.10, through the mirror
IMAGE_PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

host_suite() { . /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"; }

# host_debian_sources SUITE: the host's own apt sources for SUITE and SUITE-* (updates, security) as deb822
# paragraphs on stdout; other repositories the host may have enabled are left out.
host_debian_sources() {
  local suite=$1 f etc=${APT_ETC:-/etc/apt}
  for f in "$etc"/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v s="$suite" '
      function flush() { if (keep && para != "") printf "%s\n", para; para = ""; keep = 0 }
      /^[ \t]*$/ { flush(); next }
      /^#/ { next }
      { para = para $0 "\n" }
      tolower($1) == "suites:" { keep = 1; for (i = 2; i <= NF; i++) if ($i != s && index($i, s "-") != 1) keep = 0 }
      END { flush() }' "$f"
  done
  # One-line sources become deb822 paragraphs (options in brackets other than signed-by are dropped).
  for f in "$etc"/sources.list "$etc"/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk -v s="$suite" '
      $1 != "deb" { next }
      { signed = ""; i = 2
        if ($2 ~ /^\[/) { for (; i <= NF; i++) { if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
                                                 if ($i ~ /\]$/) { i++; break } } }
        uri = $i; st = $(i + 1); comps = ""
        for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
        if (st != s && index(st, s "-") != 1) next
        printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\n", uri, st, comps
        if (signed != "") printf "Signed-By: %s\n", signed
        printf "\n" }' "$f"
  done
}

# build_instance_rootfs: the instance image's rootfs (Debian, the host's suite, from the host's apt sources),
# built once with mmdebstrap and cached; prints the tar's path. The image carries no apt sources: the host's
# are this machine's business (add your own in a derived image).
build_instance_rootfs() {
  local suite key out tmp sources start=$SECONDS
  suite=$(host_suite) || return 1
  key=$(printf '%s\n' "$suite" "${INSTANCE_PACKAGES[@]}" "${INSTANCE_DPKG_OPTS[@]}" "${INSTANCE_MMDEBSTRAP_OPTS[@]}" \
    "$INSTANCE_USER_HOOK" | sha256sum | cut -c1-12)
  out="$IMAGES_CACHE/instance-debian-$key.tar"
  if [[ -f $out ]]; then
    log "instance rootfs ($suite): cached ($out)"
    echo "$out"; return 0
  fi
  command -v mmdebstrap >/dev/null || { log "ERROR: mmdebstrap is not installed (apt-get install mmdebstrap)"; return 1; }
  sources=$(host_debian_sources "$suite")
  [[ -n $sources ]] || { log "ERROR: no apt sources for $suite on this host"; return 1; }
  mkdir -p "$IMAGES_CACHE"
  tmp=$(mktemp --suffix=.tar "$IMAGES_CACHE/.instance-debian-$key.XXXXXX") || return 1
  log "instance rootfs ($suite): building with mmdebstrap (a few minutes, once) -> $out"
  local dpkgopts=() o
  for o in "${INSTANCE_DPKG_OPTS[@]}"; do dpkgopts+=(--dpkgopt="$o"); done
  local include
  include=$(IFS=,; echo "${INSTANCE_PACKAGES[*]}")
  if ! mmdebstrap --quiet "${INSTANCE_MMDEBSTRAP_OPTS[@]}" --include="$include" "${dpkgopts[@]}" \
      --customize-hook="$INSTANCE_USER_HOOK" \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/etc/apt/sources.list "$1"/etc/apt/sources.list.d/*' \
      "$suite" "$tmp" - <<<"$sources" >&2; then
    rm -f "$tmp"
    log "ERROR: mmdebstrap failed"
    return 1
  fi
  chmod 0644 "$tmp" && mv "$tmp" "$out" || return 1
  # Rootfs tars of earlier package lists (and their gzipped layers) are stale now.
  find "$IMAGES_CACHE" -maxdepth 1 -name 'instance-debian-*.tar*' ! -name "instance-debian-$key.tar*" -delete
  log "instance rootfs: $(du -h "$out" | cut -f1) in $((SECONDS - start)) s"
  echo "$out"
}

# layer_of FILE NAME OUT: a one-file layer tar (NAME, a path from the root, mode 0755, owned by root, fixed mtime).
layer_of() {
  local file=$1 name=$2 out=$3 dir tmp
  dir=$(mktemp -d) || return 1
  mkdir -p "$dir/$(dirname "$name")" && cp "$file" "$dir/$name" && chmod 0755 "$dir/$name" \
    || { rm -rf "$dir"; return 1; }
  tmp="$out.tmp.$$"
  if ! tar --create --file "$tmp" --directory "$dir" --owner=0 --group=0 --numeric-owner --mtime=@0 \
      --format=posix --pax-option=delete=atime,delete=ctime "$name"; then
    rm -rf "$dir" "$tmp"; return 1
  fi
  rm -rf "$dir"
  mv "$tmp" "$out"
}

file_hash() { sha256sum "$1" | cut -c1-12; }

static_binary() {  # static_binary FILE: an ELF without a program interpreter (it runs in any image)
  local headers
  [[ -f $1 && -x $1 ]] || { log "ERROR: $1 is not an executable file"; return 1; }
  headers=$(LC_ALL=C readelf -l "$1" 2>&1) || { log "ERROR: $1 is not an ELF executable"; return 1; }
  if [[ $headers == *"program interpreter"* ]]; then
    log "ERROR: $1 is dynamically linked; it must be static (CGO_ENABLED=0)"; return 1
  fi
}

# build_tools_layer SSHD_BINARY: the tools image's one layer, /gpucloud-sshd (the platform's SSH server, put
# into every instance); cached by the binary's hash; prints the tar's path.
build_tools_layer() {
  local bin=${1:?usage: build_tools_layer SSHD_BINARY} out
  static_binary "$bin" || return 1
  out="$IMAGES_CACHE/tools-$(file_hash "$bin").tar"
  mkdir -p "$IMAGES_CACHE"
  [[ -f $out ]] || layer_of "$bin" gpucloud-sshd "$out" || { log "ERROR: cannot write $out"; return 1; }
  echo "$out"
}

# gzip_layer TAR: TAR.gz next to it, made once (crane keeps a gzipped layer as it is, so a second push
# hashes it instead of compressing the whole rootfs again); prints its path.
gzip_layer() {
  local tar=$1
  if [[ ! -f $tar.gz ]]; then
    gzip -n -c "$tar" >"$tar.gz.tmp.$$" && mv "$tar.gz.tmp.$$" "$tar.gz" || { rm -f "$tar.gz.tmp.$$"; return 1; }
  fi
  echo "$tar.gz"
}

# ---- the registry ----------------------------------------------------------------------------------------

registry_pid() {  # registry_pid STATE_DIR: the PID of a live crane registry this state dir started
  local f="$1/registry.pid" pid cmd
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"/crane registry serve "* ]] || return 1
  echo "$pid"
}

registry_answers() { curl -sf --max-time 2 -o /dev/null "http://$1/v2/"; }

# start_registry ADDR STATE_DIR LOG_DIR: crane's registry on ADDR (host:port on 127.0.0.1), blobs under
# STATE_DIR/registry-blobs, log LOG_DIR/registry.log; returns once GET /v2/ answers. Idempotent.
start_registry() {
  local addr=${1:?usage: start_registry ADDR STATE_DIR LOG_DIR} state=${2:?} logs=${3:?} pid start=$SECONDS
  [[ -x $CRANE_BIN/crane ]] || { log "ERROR: crane is not built (sandbox/build.sh crane)"; return 1; }
  if pid=$(registry_pid "$state"); then
    if [[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *"--address $addr "* ]] && registry_answers "$addr"; then
      log "registry: already running on $addr (pid $pid)"; return 0
    fi
    log "ERROR: the registry of $state (pid $pid) is not answering on $addr; stop_registry $state first"
    return 1
  fi
  if registry_answers "$addr"; then
    log "ERROR: something else already answers on http://$addr/v2/"; return 1
  fi
  mkdir -p "$state/registry-blobs" "$logs"
  # 8>&- 9>&-: like sandbox.sh's daemons, it must not inherit the callers' lock file descriptors.
  setsid "$CRANE_BIN/crane" registry serve --address "$addr" --disk "$state/registry-blobs" \
    >"$logs/registry.log" 2>&1 </dev/null 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$state/registry.pid"
  until registry_answers "$addr"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "ERROR: the registry exited; last lines of $logs/registry.log:"
      tail -n 15 "$logs/registry.log" >&2
      rm -f "$state/registry.pid"
      return 1
    fi
    if (( SECONDS - start > REGISTRY_TIMEOUT )); then
      log "ERROR: the registry did not answer on http://$addr/v2/ within ${REGISTRY_TIMEOUT}s"
      stop_registry "$state"
      return 1
    fi
    sleep 0.2
  done
  log "registry: serving on $addr (pid $pid, $((SECONDS - start)) s)"
}

# stop_registry STATE_DIR: SIGTERM, SIGKILL after 10 s; removes the PID file. Quiet when nothing runs.
stop_registry() {
  local state=${1:?usage: stop_registry STATE_DIR} pid n
  if pid=$(registry_pid "$state"); then
    log "registry: stopping (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/registry.pid"
}

# ---- pushing ---------------------------------------------------------------------------------------------

crane_() {  # crane with plain http to the local registry; quiet unless it fails
  local err
  err=$("$CRANE_BIN/crane" --insecure "$@" 2>&1 >/dev/null) || { log "crane $1: $err"; return 1; }
}

# push_image REF LAYER PLATFORM MUTATE_ARGS...: a one-layer OCI image with the given config.
push_image() {
  local ref=$1 layer=$2 platform=$3; shift 3
  crane_ append --oci-empty-base -f "$layer" -t "$ref" \
    && crane_ mutate "$ref" --set-platform "$platform" "$@" -t "$ref" \
    || { log "ERROR: pushing $ref failed"; return 1; }
}

# push_sandbox_images ADDR SSHD_BINARY [REF_FILE]: pushes the pause, instance, catalog alias and tools images
# to the registry on ADDR; prints the tools image reference and writes it to REF_FILE when given.
push_sandbox_images() {
  local addr=${1:?usage: push_sandbox_images ADDR SSHD_BINARY [REF_FILE]} sshd=${2:?} ref_file=${3:-}
  local start=$SECONDS platform pause_dir rootfs layer tools alias tools_ref
  platform="linux/$(go env GOARCH 2>/dev/null || dpkg --print-architecture)"
  pause_dir=$(pause_bin_dir)
  [[ -x $pause_dir/pause ]] || { log "ERROR: pause is not built (sandbox/build.sh pause)"; return 1; }
  [[ -x $CRANE_BIN/crane ]] || { log "ERROR: crane is not built (sandbox/build.sh crane)"; return 1; }
  registry_answers "$addr" || { log "ERROR: no registry answers on $addr"; return 1; }
  rootfs=$(build_instance_rootfs) || return 1
  tools=$(build_tools_layer "$sshd") || return 1
  mkdir -p "$IMAGES_CACHE"
  layer="$IMAGES_CACHE/pause-$(file_hash "$pause_dir/pause").tar"
  [[ -f $layer ]] || layer_of "$pause_dir/pause" pause "$layer" || return 1
  push_image "$addr/$PAUSE_REF" "$layer" "$platform" --entrypoint /pause || return 1

  layer=$(gzip_layer "$rootfs") || return 1
  push_image "$addr/$INSTANCE_REPO:$(host_suite)" "$layer" "$platform" --cmd /bin/bash --env "$IMAGE_PATH_ENV" \
    || return 1
  for alias in "${CATALOG_ALIASES[@]}"; do
    crane_ copy "$addr/$INSTANCE_REPO:$(host_suite)" "$addr/$alias" \
      || { log "ERROR: copying the instance image to $addr/$alias failed"; return 1; }
  done
  # The catalog records the command the Jupyter image runs (start-notebook.py): its stand-in gets one more
  # layer with a stand-in of that command (sandbox/images/start-notebook.py).
  layer="$IMAGES_CACHE/start-notebook-$(file_hash "$SANDBOX_SRC/images/start-notebook.py").tar"
  [[ -f $layer ]] || layer_of "$SANDBOX_SRC/images/start-notebook.py" usr/local/bin/start-notebook.py "$layer" \
    || return 1
  crane_ append -b "$addr/$INSTANCE_REPO:$(host_suite)" -f "$layer" -t "$addr/$JUPYTER_ALIAS" \
    || { log "ERROR: pushing $addr/$JUPYTER_ALIAS failed"; return 1; }

  tools_ref="$addr/$TOOLS_REPO:$(file_hash "$sshd")"
  push_image "$tools_ref" "$tools" "$platform" --entrypoint /gpucloud-sshd || return 1
  # The name the product's INSTANCE_TOOLS_IMAGE defaults to (apps/operator/specs.py), pulled Always.
  crane_ tag "$tools_ref" sandbox || return 1
  log "images pushed to $addr in $((SECONDS - start)) s; tools image $tools_ref"
  if [[ -n $ref_file ]]; then
    printf '%s\n' "$tools_ref" >"$ref_file.tmp.$$" && mv "$ref_file.tmp.$$" "$ref_file" || return 1
  fi
  echo "$tools_ref"
}
