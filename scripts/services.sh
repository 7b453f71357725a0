#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis run on 127.0.0.1, installing the Debian packages when missing.
# Used by `make run` and `make test`. Skipped for a service whose URL the caller set (DATABASE_URL, REDIS_URL).
# Under CI=true any failure is fatal.
set -euo pipefail

PG_PORT="${GPUCLOUD_PG_PORT:-5432}"
REDIS_PORT="${GPUCLOUD_REDIS_PORT:-6379}"
VAR_DIR="${GPUCLOUD_VAR_DIR:-$(pwd)/var}"
DB_USER=gpucloud
DB_PASSWORD=gpucloud

log() { printf '[services] %s\n' "$*"; }
fail() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    fail "need root (or sudo) to run: $*"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then log "DATABASE_URL is set; not managing PostgreSQL"; return; fi
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v pg_isready >/dev/null; then
    apt_install postgresql postgresql-contrib
  fi
  if ! pg_ready; then
    local version cluster
    version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    cluster=main
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^${version} ${cluster}$"; then
      log "creating PostgreSQL ${version} cluster on port ${PG_PORT}"
      as_root pg_createcluster "$version" "$cluster" -p "$PG_PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    fi
    log "starting PostgreSQL ${version}/${cluster}"
    as_root pg_ctlcluster "$version" "$cluster" start || true
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || fail "PostgreSQL did not become ready on 127.0.0.1:${PG_PORT}"
  fi
  # The role may create databases because the test runner creates and drops test_gpucloud.
  as_root runuser -u postgres -- psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${DB_USER}') THEN
    CREATE ROLE ${DB_USER} LOGIN CREATEDB PASSWORD '${DB_PASSWORD}';
  END IF;
END \$\$;
SQL
  if ! as_root runuser -u postgres -- psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname='gpucloud'" | grep -q 1; then
    as_root runuser -u postgres -- createdb -p "$PG_PORT" -O "$DB_USER" gpucloud
  fi
  log "PostgreSQL ready on 127.0.0.1:${PG_PORT}"
}

redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then log "REDIS_URL is set; not managing Redis"; return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  if ! redis_ready; then
    mkdir -p "$VAR_DIR/redis"
    log "starting Redis on 127.0.0.1:${REDIS_PORT}"
    # appendonly: a task the API queued must survive a Redis restart.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --dir "$VAR_DIR/redis" \
      --appendonly yes --save "" --logfile "$VAR_DIR/redis/redis.log" --pidfile "$VAR_DIR/redis/redis.pid"
    for _ in $(seq 1 20); do redis_ready && break; sleep 0.5; done
    redis_ready || fail "Redis did not become ready on 127.0.0.1:${REDIS_PORT}"
  fi
  log "Redis ready on 127.0.0.1:${REDIS_PORT}"
}

ensure_postgres
ensure_redis
