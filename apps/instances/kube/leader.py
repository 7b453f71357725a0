"""Leader election per region with a PostgreSQL advisory lock.

The lock lives on a dedicated connection, opened for this purpose only and held for as long as the
operator leads the region: Django's own connections are closed and reopened by `close_old_connections`,
which would silently drop a session-level lock. If the connection dies, PostgreSQL releases the lock and
`still_held()` says so; the operator then stops acting and competes again. Advisory locks are scoped to
one database, so control planes on different databases never block each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

import psycopg
from django.conf import settings

logger = logging.getLogger(__name__)

_NAMESPACE = "gpucloud-operator-region"


def lock_key(region_id: Any) -> int:
    """A stable signed 64-bit key for the region (pg advisory locks take a bigint)."""
    digest = hashlib.sha256(f"{_NAMESPACE}:{region_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _connect() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    params: dict[str, Any] = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "autocommit": True,
        "connect_timeout": 5,
        "application_name": "gpucloud-operator-lock",
        # Notice a dead peer within about a minute, so a partitioned leader's lock is released.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    params.update({k: v for k, v in (db.get("OPTIONS") or {}).items() if k in ("sslmode", "sslrootcert")})
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None})


class RegionLock:
    """`try_acquire()` once leadership is wanted; `still_held()` on every loop; `release()` at the end."""

    def __init__(self, region_id: Any):
        self.key = lock_key(region_id)
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        conn = _connect()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        except Exception:
            conn.close()
            raise
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def still_held(self) -> bool:
        """True while the lock's connection is alive (the lock is held exactly as long as it)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except Exception:
            logger.warning("operator lock connection lost; giving up leadership", exc_info=True)
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        except Exception:
            logger.info("could not unlock explicitly; closing the connection releases it", exc_info=True)
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                conn.close()
