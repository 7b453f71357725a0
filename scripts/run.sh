#!/usr/bin/env bash
# Runs the control plane locally (`make run`, after the virtualenv, PostgreSQL and Redis): migrates, then
# starts scripts/bring_up.py, which builds and starts the sandbox and object storage in the background (its Go
# builds at the lowest CPU priority) and connects the regions once the demo is seeded (progress in
# var/build-status.json, shown by the console's banner; log in var/log/bring-up.log); meanwhile seeds the demo
# and starts web, the Celery worker and beat and the operator at once.
# Prints the log-in banner as soon as the web server answers, then a line once the regions are connected.
# Ctrl-C stops all of them (the sandbox and SeaweedFS keep running, so the next start reuses them).
#   SANDBOX=0            no sandbox: regions from GPUCLOUD_REGION_KUBECONFIGS, connected by seed_demo
#   GPUCLOUD_WEB_PORT    the web server's port on 127.0.0.1 (8000)
set -euo pipefail
PY=.venv/bin/python
PORT="${GPUCLOUD_WEB_PORT:-8000}"
mkdir -p var/log
# bring_up.py holds its lines until the banner is out, and connects the regions once the database is ready.
ANSWERED=var/web-answered
DB_READY=var/db-ready
rm -f "$ANSWERED" "$DB_READY"

pids=()
cleanup() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup INT TERM EXIT

# Migrations first, alone: beside the Go builds' module downloads (heavy disk writes, which nice does not
# order) migrating and seeding took 170 s instead of 90 s on the loaded 2-core machine (docs/sandbox.md).
$PY manage.py migrate --noinput
bring_up_args=(run --announce-after "$ANSWERED" --db-ready "$DB_READY")
[[ ${SANDBOX:-1} == 0 ]] && bring_up_args+=(--no-sandbox)
$PY scripts/bring_up.py "${bring_up_args[@]}" 2>var/log/bring-up.log &
pids+=($!)
# The S3 admin identity before any process reads its settings (the server itself comes up later).
bash scripts/s3.sh prepare
banner=$($PY manage.py seed_demo ${DEMO_PASSWORD:+--password "$DEMO_PASSWORD"})
touch "$DB_READY"
# Database connections per process (docs/operations.md "Database connections"): a worker's pool processes
# run one task at a time, beat runs none, the operator's pool holds what its threads may hold at once in
# the sandbox's two regions, 1 + 2 x (2 + 2 + 4 workers + 2) = 21 (plus per region a lock and a LISTEN
# connection); web's workers hold one per thread (scripts/web.sh), plus one per long-poll waiter.
DATABASE_POOL_MAX_SIZE=1 .venv/bin/celery -A config worker --loglevel=INFO --concurrency=2 >var/log/worker.log 2>&1 &
pids+=($!)
DATABASE_POOL_MAX_SIZE=1 .venv/bin/celery -A config beat --loglevel=INFO --schedule=var/celerybeat-schedule >var/log/beat.log 2>&1 &
pids+=($!)
# The operator drives the regions' clusters (the sandbox unless GPUCLOUD_REGION_KUBECONFIGS says otherwise);
# it picks up each region once it is connected.
DATABASE_POOL_MAX_SIZE=21 $PY manage.py operator --pod-workers=2 --change-workers=2 --resync-workers=4 \
  >var/log/operator.log 2>&1 &
pids+=($!)
# As production: gunicorn, static files by whitenoise, DEBUG off (DEBUG=1 make run for debug pages).
WEB_BIND="127.0.0.1:$PORT" PYTHON=$PY bash scripts/web.sh &
web=$!
pids+=("$web")

until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/readyz" 2>/dev/null; do
  kill -0 "$web" 2>/dev/null || { echo "the web server exited before it answered" >&2; exit 1; }
  sleep 0.2
done
printf '%s\n' "$banner"
echo "serving http://127.0.0.1:$PORT with worker, beat and operator (logs in var/log/; Ctrl-C stops all)"
if [[ ${SANDBOX:-1} == 0 ]]; then
  echo "object storage is coming up in the background (var/log/bring-up.log)"
else
  echo "the sandbox's regions and object storage are coming up in the background: launches wait as pending"
  echo "until their region is connected (progress in the console's banner and var/log/bring-up.log)"
fi
touch "$ANSWERED"
wait "$web"
