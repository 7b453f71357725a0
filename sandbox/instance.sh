# The sandbox instance (sourced after common.sh, not executed): several sandboxes run side by side on one
# machine, each with its own name, state directory, port block and processes; only the binaries in
# $GPUCLOUD_CACHE_DIR/bin are shared. `make run` uses the instance `default`, `make test` the instance
# `test`, so nothing the demo holds can change what a test sees (docs/sandbox.md, "Instances").
#
#   GPUCLOUD_SANDBOX_INSTANCE  the instance (default: $SANDBOX_DEFAULT_INSTANCE if the sourcing script set
#                              it, else `default`); lowercase letters, digits and dashes
#   GPUCLOUD_SANDBOX_SLOT      the port block of an instance that is not in SANDBOX_SLOTS (1-7)
#   GPUCLOUD_SANDBOX_DIR       its state directory (default ~/.cache/gpucloud/sandbox for `default`,
#                              ~/.cache/gpucloud/sandbox-<instance> for any other)
#
# Everything of an instance derives from these three: a component listens on its base port plus
# SANDBOX_PORT_OFFSET (100 per slot; `instance_port BASE`) and keeps its state under SANDBOX_DIR. A component
# added later (real kubelet nodes, for instance) does the same, so it exists once per instance too.

# The instances the project uses, and their port blocks. Slot 0 keeps the ports the sandbox always had.
declare -A SANDBOX_SLOTS=([default]=0 [test]=1 [bench]=2 [bench-dedicated]=3 [scratch]=4)
SANDBOX_MAX_SLOT=7  # 100 ports per slot: slot 8 would reach the controller-managers of slot 0 (17257)

SANDBOX_INSTANCE="${GPUCLOUD_SANDBOX_INSTANCE:-${SANDBOX_DEFAULT_INSTANCE:-default}}"
[[ $SANDBOX_INSTANCE =~ ^[a-z0-9][a-z0-9-]{0,39}$ ]] ||
  die "GPUCLOUD_SANDBOX_INSTANCE=$SANDBOX_INSTANCE: lowercase letters, digits and dashes (at most 40)"
SANDBOX_SLOT="${GPUCLOUD_SANDBOX_SLOT:-${SANDBOX_SLOTS[$SANDBOX_INSTANCE]:-}}"
[[ -n $SANDBOX_SLOT ]] ||
  die "instance $SANDBOX_INSTANCE has no port block: set GPUCLOUD_SANDBOX_SLOT (5-$SANDBOX_MAX_SLOT are free)"
[[ $SANDBOX_SLOT =~ ^[0-9]$ ]] && ((SANDBOX_SLOT <= SANDBOX_MAX_SLOT)) ||
  die "GPUCLOUD_SANDBOX_SLOT=$SANDBOX_SLOT: 0-$SANDBOX_MAX_SLOT"
SANDBOX_PORT_OFFSET=$((100 * SANDBOX_SLOT))
if [[ $SANDBOX_INSTANCE == default ]]; then
  SANDBOX_DIR="${GPUCLOUD_SANDBOX_DIR:-$GPUCLOUD_CACHE_DIR/sandbox}"
else
  SANDBOX_DIR="${GPUCLOUD_SANDBOX_DIR:-$GPUCLOUD_CACHE_DIR/sandbox-$SANDBOX_INSTANCE}"
fi

# A state directory belongs to one instance (the name in its `instance` file; the default directory is
# `default`'s): another instance's ports with it would take its running processes for stale ones and stop
# them (a GPUCLOUD_SANDBOX_DIR left in a shell, for instance).
if [[ -f $SANDBOX_DIR/instance ]]; then
  SANDBOX_DIR_OWNER=$(<"$SANDBOX_DIR/instance")
elif [[ -d $SANDBOX_DIR && $SANDBOX_DIR -ef $GPUCLOUD_CACHE_DIR/sandbox ]]; then
  SANDBOX_DIR_OWNER=default
else
  SANDBOX_DIR_OWNER=$SANDBOX_INSTANCE
fi
[[ $SANDBOX_DIR_OWNER == "$SANDBOX_INSTANCE" ]] ||
  die "$SANDBOX_DIR holds sandbox instance $SANDBOX_DIR_OWNER, not $SANDBOX_INSTANCE (a stale GPUCLOUD_SANDBOX_DIR?)"
claim_sandbox_dir() { mkdir -p "$SANDBOX_DIR" && echo "$SANDBOX_INSTANCE" >"$SANDBOX_DIR/instance"; }

instance_port() { echo $(($1 + SANDBOX_PORT_OFFSET)); }
