"""Gunicorn's settings (`gunicorn --config=python:config.gunicorn ...`, as the chart, the image and `make run`
through scripts/web.sh run it; docs/operations.md "Serving").

- Its own error log goes through the same handler as every other log line, JSON and redacted
  (config/settings/observability.py, docs/operations.md "Logs"). Gunicorn reads this in its master process
  before Django is set up, so the format and level come from the environment the settings read them from:
  LOG_FORMAT (json with the production settings, plain otherwise, as there) and LOG_LEVEL (INFO).
- Threads (gthread): a worker accepts connections up to `worker_connections` and queues their requests for
  its threads, so a burst waits instead of being refused; beyond that the kernel's listen backlog holds them.
- Each worker's database pool holds at most as many connections as it has threads
  (DATABASE_POOL_MAX_SIZE, unless the environment sets it): a thread serves one request at a time and never
  waits for another's connection, and one pod opens at most workers x threads connections.
"""

import os
from typing import Any

from config.settings.observability import gunicorn_logging

_production = os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".production")
logconfig_dict = gunicorn_logging(
    log_format=os.environ.get("LOG_FORMAT") or ("json" if _production else "plain"),
    level=os.environ.get("LOG_LEVEL") or "INFO",
)

worker_class = "gthread"
threads = 4  # the chart and scripts/web.sh pass their own --threads
# Accepted connections per worker (in flight or queued for a thread); the rest wait in the listen backlog.
# Far below the open-files limit, so a flood of connections never makes accept() fail.
worker_connections = 500
backlog = 2048
timeout = 60  # a worker whose main loop stalls this long is restarted (requests run in threads)
graceful_timeout = 30  # in-flight requests may finish on SIGTERM (a rollout, Ctrl-C)


def post_fork(server: Any, worker: Any) -> None:
    """In each worker before it loads Django: its database pool is as big as its thread pool."""
    os.environ.setdefault("DATABASE_POOL_MAX_SIZE", str(server.cfg.threads))
