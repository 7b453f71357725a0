"""The database connection settings every environment builds from DATABASE_URL (docs/operations.md
"Database connections").

Each process keeps its PostgreSQL connections in a pool of bounded size (psycopg's pool, through Django's
`pool` option): a thread takes a connection for a request or a task and hands it back at the end, so a
process never holds more than DATABASE_POOL_MAX_SIZE connections however many threads it runs, and the
whole deployment stays under the server's max_connections (the chart checks the sum). A thread that finds
every connection taken, or the server refusing new ones, waits DATABASE_POOL_TIMEOUT seconds and then gets
an OperationalError (psycopg_pool.PoolTimeout), which web answers with 503 and Retry-After
(apps/core/errors.py). Without the pool (DATABASE_POOL=0, the tests' default) each thread keeps its own
connection for CONN_MAX_AGE seconds, as Django does by default.
"""

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env_bool, env_int

# django-prometheus's backend is Django's PostgreSQL backend counting queries, errors and their duration.
DATABASE_ENGINE = "django_prometheus.db.backends.postgresql"
POOL_MAX_SIZE = 4  # per process, unless DATABASE_POOL_MAX_SIZE says otherwise (gunicorn: its threads)
POOL_TIMEOUT_SECONDS = 5
# Without the pool: how long a thread keeps its connection between requests.
UNPOOLED_CONN_MAX_AGE = 60


def pool_options(*, max_size: int, timeout: float) -> dict[str, Any]:
    """psycopg_pool.ConnectionPool's arguments: one connection kept open (the first request after a quiet
    spell does not pay for a new one), at most `max_size`, each waiter given up after `timeout` seconds."""
    if max_size < 1:
        raise ImproperlyConfigured(f"DATABASE_POOL_MAX_SIZE must be 1 or more, got {max_size}.")
    if timeout <= 0:
        raise ImproperlyConfigured(f"DATABASE_POOL_TIMEOUT must be more than 0 seconds, got {timeout}.")
    return {"min_size": 1, "max_size": max_size, "timeout": timeout, "name": "gpucloud"}


def databases(url: str, *, pooled: bool | None = None) -> dict[str, Any]:
    """DATABASES for `url`; `pooled` None: DATABASE_POOL from the environment (on unless 0/false)."""
    if pooled is None:
        pooled = env_bool("DATABASE_POOL", True)
    default = dj_database_url.parse(
        url,
        engine=DATABASE_ENGINE,
        conn_max_age=0 if pooled else UNPOOLED_CONN_MAX_AGE,  # Django refuses persistent pooled connections
        conn_health_checks=True,  # with the pool: psycopg checks a connection before handing it out
    )
    if pooled:
        default.setdefault("OPTIONS", {})["pool"] = pool_options(
            max_size=env_int("DATABASE_POOL_MAX_SIZE", POOL_MAX_SIZE),
            timeout=env_int("DATABASE_POOL_TIMEOUT", POOL_TIMEOUT_SECONDS),
        )
    return {"default": default}
