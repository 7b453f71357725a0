#!/usr/bin/env bash
# Serves the web app the way production does: gunicorn with config/gunicorn.py (threads, the database pool
# sized to them, JSON-capable logs), static files collected and served by whitenoise, DEBUG off. `make run`
# (scripts/run.sh) and the serve_load benchmark (bench/serve_load.py) both start web with this script.
#
#   WEB_BIND     address:port (default 127.0.0.1:8000; servers bind to 127.0.0.1 only)
#   WEB_WORKERS  gunicorn worker processes (default 2)
#   WEB_THREADS  threads per worker, and each worker's database connections (default 4)
#   DEBUG=1      Django's debug pages, static files from their sources, code reloaded on change
#   PYTHON       the interpreter (default .venv/bin/python)
#   STATIC_ROOT  where static files are collected (default var/staticfiles)
set -euo pipefail
DEBUG="${DEBUG:-}"
PYTHON="${PYTHON:-.venv/bin/python}"
BIND="${WEB_BIND:-127.0.0.1:8000}"
case "$BIND" in
  127.0.0.1:*) ;;
  *) echo "web.sh: WEB_BIND must be 127.0.0.1:<port>, got $BIND" >&2; exit 2 ;;
esac
# No control socket (as in the chart): two servers on one machine would share $HOME/.gunicorn/gunicorn.ctl.
args=(--bind="$BIND" --workers="${WEB_WORKERS:-2}" --threads="${WEB_THREADS:-4}" --no-control-socket
  --config=python:config.gunicorn)

case "${DEBUG,,}" in
  1 | true | yes | on) args+=(--reload) ;;
  *)
    # Collected again only when the sources or the installed packages changed (about 7 s on 2 cores).
    stamp="${STATIC_ROOT:-var/staticfiles}/.collected"
    if [ ! -f "$stamp" ] || [ -n "$(find static pyproject.toml requirements/constraints.txt -newer "$stamp" -print -quit)" ]; then
      "$PYTHON" manage.py collectstatic --noinput --verbosity 0
      touch "$stamp"
    fi
    ;;
esac
exec "$PYTHON" -m gunicorn config.wsgi:application "${args[@]}"
