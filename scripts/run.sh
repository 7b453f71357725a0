#!/usr/bin/env bash
# Runs the control plane locally: seeds the demo, then web, Celery worker and beat until Ctrl-C.
set -euo pipefail
PY=.venv/bin/python
mkdir -p var/log
$PY manage.py seed_demo ${DEMO_PASSWORD:+--password "$DEMO_PASSWORD"}

pids=()
cleanup() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup INT TERM EXIT

# Database connections per process (docs/operations.md "Database connections"): a worker's pool processes
# run one task at a time, beat runs none, the operator's threads take turns on a pool of 6 (plus one lock
# connection per region it leads); web's workers hold one per thread (scripts/web.sh).
DATABASE_POOL_MAX_SIZE=1 .venv/bin/celery -A config worker --loglevel=INFO --concurrency=2 >var/log/worker.log 2>&1 &
pids+=($!)
DATABASE_POOL_MAX_SIZE=1 .venv/bin/celery -A config beat --loglevel=INFO --schedule=var/celerybeat-schedule >var/log/beat.log 2>&1 &
pids+=($!)
# The operator drives the regions' clusters (the sandbox unless GPUCLOUD_REGION_KUBECONFIGS says otherwise).
DATABASE_POOL_MAX_SIZE=6 $PY manage.py operator >var/log/operator.log 2>&1 &
pids+=($!)
echo "worker, beat and operator are running (logs in var/log/); serving http://127.0.0.1:8000 (Ctrl-C stops all)"
# As production: gunicorn, static files by whitenoise, DEBUG off (DEBUG=1 make run for debug pages).
PYTHON=$PY bash scripts/web.sh
