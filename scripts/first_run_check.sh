#!/usr/bin/env bash
# `make first-run-check`: `make run` on a fresh clone with empty caches, timed (docs/sandbox.md, "First run").
#
# Clones the committed HEAD into a temporary folder whose HOME, Go build cache (GOCACHE), module cache
# (GOMODCACHE), gpucloud cache (GPUCLOUD_CACHE_DIR: binaries, sandbox state, S3 data), pip and uv caches start
# all empty inside it, never the developer's. Every port moves (web, metrics, the sandbox's, SeaweedFS's), its
# own database and Redis database, so it runs beside a developer's `make run` and `make test`. PostgreSQL and
# Redis are the machine's system services, shared (already installed and running: their installation is not
# in the figures). Then runs `make run` there and records the seconds until the console and the API answer,
# until the regions are connected and until object storage is ready; stops everything it started (by PID
# and PID files) and deletes the folder (KEEP=1 keeps it). Fails if the console does not answer within
# FIRST_RUN_ANSWER_LIMIT seconds (180), or the regions and object storage are not up within FIRST_RUN_TIMEOUT
# (3600).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ANSWER_LIMIT="${FIRST_RUN_ANSWER_LIMIT:-180}"
TIMEOUT="${FIRST_RUN_TIMEOUT:-3600}"
# Ports away from a developer's `make run` and `make test` (and the +100/+10000 a second sandbox or S3 uses);
# each is checked free first. SeaweedFS's gRPC ports are its HTTP ports + 10000.
WEB_PORT=18400
PORTS=(18400 19401 19402 38433 39433 38180 38988 48433 49433 48180 48988
       26743 26744 33990 33991 34000 34001 27557 27567 27559 27569)

say() { printf '[first-run %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

for port in "${PORTS[@]}"; do
  if ss -Htln "sport = :$port" | grep -q .; then fail "port $port is in use; it is needed for the clone's servers"; fi
done

TMP=$(mktemp -d /tmp/gpucloud-first-run.XXXXXX)
chmod 755 "$TMP"  # services.sh runs psql as postgres from the clone
RESULTS="$ROOT/var/first-run/$(date -u +%Y%m%dT%H%M%SZ)"  # the logs, kept after the folder is deleted
REPO="$TMP/repo"
DB="gpucloud_first_run_$$"
MAKE_PID=""
say "clone of $(git -C "$ROOT" rev-parse --short HEAD) in $TMP (KEEP=1 keeps it)"
git clone --quiet "$ROOT" "$REPO"

export HOME="$TMP/home" XDG_CACHE_HOME="$TMP/home/.cache"
export GOCACHE="$TMP/go-build" GOMODCACHE="$TMP/go-mod" GPUCLOUD_CACHE_DIR="$TMP/gpucloud"
export PIP_CACHE_DIR="$TMP/pip" UV_CACHE_DIR="$TMP/uv"
mkdir -p "$HOME" "$GOCACHE" "$GOMODCACHE" "$GPUCLOUD_CACHE_DIR" "$PIP_CACHE_DIR" "$UV_CACHE_DIR"
export DATABASE_URL="postgres://gpucloud:gpucloud@127.0.0.1:5432/$DB" REDIS_URL="redis://127.0.0.1:6379/11"
export GPUCLOUD_WEB_PORT=$WEB_PORT METRICS_WORKER_PORT=19401 METRICS_OPERATOR_PORT=19402 SITE_URL="http://127.0.0.1:$WEB_PORT"
export GPUCLOUD_S3_PORT=38433 GPUCLOUD_S3_MASTER_PORT=39433 GPUCLOUD_S3_VOLUME_PORT=38180 GPUCLOUD_S3_FILER_PORT=38988
export GPUCLOUD_SANDBOX_APISERVER_PORT=26743 GPUCLOUD_SANDBOX_ETCD_PORT=33990
export GPUCLOUD_SANDBOX_CONTROLLER_MANAGER_PORT=27557 GPUCLOUD_SANDBOX_SCHEDULER_PORT=27559
unset GPUCLOUD_SANDBOX_DIR GPUCLOUD_S3_DIR GPUCLOUD_REGION_KUBECONFIGS GPUCLOUD_BUILD_STATUS_FILE KUBECONFIG
unset GPUCLOUD_SANDBOX_PYTHON DJANGO_SETTINGS_MODULE

psql_admin() { PGPASSWORD=gpucloud psql -q -h 127.0.0.1 -U gpucloud -d postgres -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
  trap - EXIT INT TERM
  say "stopping what it started"
  if [[ -n $MAKE_PID ]] && kill -0 "$MAKE_PID" 2>/dev/null; then
    # make, run.sh, its servers and the bring-up (their own process group): the bring-up stops the builds in
    # progress (process groups of their own) before it exits, so wait for the whole group, not make alone.
    kill -TERM -- "-$MAKE_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 -- "-$MAKE_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$MAKE_PID" 2>/dev/null || true
  fi
  (cd "$REPO" && bash sandbox/sandbox.sh stop >/dev/null 2>&1 || true)
  (cd "$REPO" && bash scripts/s3.sh stop >/dev/null 2>&1 || true)
  psql_admin -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || say "could not drop database $DB"
  mkdir -p "$RESULTS"
  cp "$TMP/make-run.log" "$RESULTS/" 2>/dev/null || true
  cp -r "$REPO/var/log" "$RESULTS/" 2>/dev/null || true
  cp "$REPO/var/build-status.json" "$GPUCLOUD_CACHE_DIR/build/timings.json" "$RESULTS/" 2>/dev/null || true
  say "logs kept in $RESULTS"
  if [[ ${KEEP:-0} == 1 ]]; then
    say "kept $TMP"
  else
    chmod -R u+w "$TMP" 2>/dev/null || true  # the module cache is read-only
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT INT TERM

# The machine's PostgreSQL and Redis (shared); the clone gets a database of its own.
(cd "$REPO" && env -u DATABASE_URL -u REDIS_URL bash scripts/services.sh >/dev/null)
psql_admin -c "CREATE DATABASE $DB"

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "make run (load average $load_start, $(nproc) cores); output in $TMP/make-run.log"
t0=$(date +%s.%N)
(cd "$REPO" && exec setsid make run DEMO_PASSWORD=first-run-check >"$TMP/make-run.log" 2>&1) &
MAKE_PID=$!
since() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}'; }
answers() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$WEB_PORT/accounts/login/") == 200 ]] &&
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$WEB_PORT/api/v1/me") == 401 ]]
}
piece_done() {  # the bring-up's status file says the piece is done (or cached)
  python3 - "$REPO/var/build-status.json" "$1" <<'EOF' 2>/dev/null
import json, sys
data = json.load(open(sys.argv[1]))
sys.exit(0 if any(p["name"] == sys.argv[2] and p["state"] in ("done", "cached") for p in data["pieces"]) else 1)
EOF
}
piece_states() {  # "name state, ..." from the bring-up's status file
  python3 -c 'import json,sys; print(", ".join(p["name"] + " " + p["state"] for p in json.load(open(sys.argv[1]))["pieces"]))' \
    "$REPO/var/build-status.json" 2>/dev/null || echo "no status file"
}
piece_failed() {
  grep -q '"state": "failed"' "$REPO/var/build-status.json" 2>/dev/null
}

api() {  # api METHOD PATH [BODY]: the demo tenant's API with the token make run printed
  local token
  token=$(sed -n 's/^ *API token: *//p' "$TMP/make-run.log" | tail -n1)
  curl -sS --max-time 60 -X "$1" -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
    "http://127.0.0.1:$WEB_PORT/api/v1/tenants/demo$2" ${3:+-d "$3"}
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', ''))"; }

t_venv="" t_db="" t_answer="" t_regions="" t_s3="" instance="" pending_note=""
while :; do
  kill -0 "$MAKE_PID" 2>/dev/null || { tail -n 30 "$TMP/make-run.log" >&2; fail "make run exited"; }
  [[ -z $t_venv && -f $REPO/.venv/.installed-run ]] && { t_venv=$(since); say "virtualenv installed after ${t_venv} s"; }
  [[ -z $t_db && -f $REPO/var/db-ready ]] && { t_db=$(since); say "migrated and seeded after ${t_db} s"; }
  if [[ -z $t_answer ]] && answers; then
    t_answer=$(since)
    say "console and API answer after ${t_answer} s"
    # A launch before the regions are connected: accepted, pending, with a message saying why.
    for _ in $(seq 1 60); do  # the banner (and its token line) follows the first answer run.sh sees
      grep -q '^ *API token: ' "$TMP/make-run.log" && break
      sleep 0.5
    done
    launched=$(api POST /instances '{"name": "first-run", "instance_type": "gpu-h100x1", "region": "us-east-1", "image": "pytorch"}' || true)
    instance=$(field id <<<"$launched")
    [[ -n $instance ]] || fail "the launch was refused: $launched"
    for _ in $(seq 1 60); do  # the worker's reconcile writes why it waits
      pending_note="$(api GET "/instances/$instance" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"] + ": " + d["state_message"])')"
      [[ $pending_note == "pending: "?* ]] && break
      sleep 1
    done
    say "launched $instance: $pending_note"
  fi
  [[ -z $t_regions ]] && piece_done regions && { t_regions=$(since); say "regions connected after ${t_regions} s"; }
  [[ -z $t_s3 ]] && piece_done s3 && { t_s3=$(since); say "object storage ready after ${t_s3} s"; }
  [[ -n $t_answer && -n $t_regions && -n $t_s3 ]] && break
  piece_failed && { tail -n 40 "$REPO/var/log/bring-up.log" >&2; fail "a piece of the bring-up failed"; }
  elapsed=$(since)
  (( elapsed > 600 )) && [[ -z $t_answer ]] && fail "the console did not answer within 600 s"
  (( elapsed > TIMEOUT )) && fail "not up within $TIMEOUT s: regions ${t_regions:-not connected}, object storage ${t_s3:-not ready} ($(piece_states))"
  sleep 1
done
sleep 3  # the last line of make run's output
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# The regions line make run printed, and the launch made while they were building runs now.
grep -q "regions .* connected" "$TMP/make-run.log" || fail "make run printed no regions line"
t_running=""
for _ in $(seq 1 120); do
  if [[ $(api GET "/instances/$instance" | field state) == running ]]; then t_running=$(since); break; fi
  sleep 1
done
[[ -n $t_running ]] || fail "the instance launched before the regions were connected did not turn running"
say "the instance launched at ${t_answer} s is running after ${t_running} s"

cat <<EOF

first-run-check  $(date -u +%Y-%m-%dT%H:%MZ)  commit $(git -C "$REPO" rev-parse --short HEAD)  $(nproc) cores  Go $(go env GOVERSION)
  load average at start / end:           $load_start / $load_end
  virtualenv installed after:            $t_venv s
  migrated and demo seeded after:        $t_db s
  console and API answer after:          $t_answer s   (limit $ANSWER_LIMIT s)
  a launch at that moment:               $pending_note
  regions connected after:               $t_regions s
  object storage ready after:            $t_s3 s
  that launch running after:             $t_running s
  pieces: $(grep -o 'bring-up finished in .*' "$REPO/var/log/bring-up.log" | tail -n1)
  caches: Go modules $(du -sh "$GOMODCACHE" | cut -f1), Go build $(du -sh "$GOCACHE" | cut -f1), binaries $(du -sh "$GPUCLOUD_CACHE_DIR/bin" | cut -f1), pip $(du -sh "$PIP_CACHE_DIR" | cut -f1)
  PostgreSQL and Redis: the machine's running services, shared (own database $DB, Redis db 11)

make run printed:
$(grep -v '^\[' "$TMP/make-run.log" | grep -E 'gpucloud demo is ready|serving http|regions .* connected|object storage is ready|ERROR' || true)
EOF
(( t_answer <= ANSWER_LIMIT )) || fail "the console answered after $t_answer s, over the limit of $ANSWER_LIMIT s"
