"""Settings of the benchmarks and of the servers they start: the test settings on a database of their own.

The database is recreated from a migrated template before each benchmark (bench/db.py), so nothing a
benchmark leaves behind changes the next one. The Celery broker and the cache use a Redis database and
prefix of their own: a `make run` worker on the same Redis must never pick up a benchmark's tasks.
"""

import os

from config.settings.test import *  # noqa: F403
from config.settings.test import CACHES, DATABASES

BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "gpucloud_bench")
DATABASES["default"]["NAME"] = BENCH_DATABASE
DATABASES["default"]["TEST"] = {"NAME": f"test_{BENCH_DATABASE}"}

# A real worker runs the reconcile tasks, as in production (the test settings run them in the request).
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": "gpucloud-bench"}}
