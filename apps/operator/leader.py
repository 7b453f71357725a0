"""Leader election with PostgreSQL advisory locks, bounded by a lease.

A lock lives on a dedicated connection, opened for this purpose only and held for as long as its owner leads:
Django's own connections are closed and reopened by `close_old_connections`, which would silently drop a
session-level lock. PostgreSQL releases the lock when that session ends, so how fast a standby can take over
depends on how fast the server ends the session of a leader that is gone:

- process killed or crashed: the kernel closes the socket and the backend exits at once;
- host gone or partitioned (no FIN ever arrives): the session sets the server's TCP keepalives and
  `tcp_user_timeout` so that a silent peer is dropped within the lease;
- process frozen (stopped, swapped out, stuck) while its kernel still answers TCP: `idle_session_timeout`
  ends a session idle for a whole lease, and a heartbeat thread keeps a healthy leader's session busy
  several times per lease.

So the lock of a leader that stopped heartbeating is free at most `OPERATOR_LEASE_SECONDS` later, and a
standby holds it one retry later. A leader that cannot confirm its session for two thirds of a lease
considers itself deposed (`lease_valid()` turns false) before the server could hand the lock over.
Advisory locks are scoped to one database, so control planes on different databases never block each
other. The session must be a direct one: a transaction-pooling proxy would break session locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from typing import Any

import psycopg
from django.conf import settings

logger = logging.getLogger(__name__)

_NAMESPACE = "gpucloud-operator-region"
DEFAULT_LEASE_SECONDS = 30.0


def lock_key(region_id: Any, namespace: str = _NAMESPACE) -> int:
    """A stable signed 64-bit key (pg advisory locks take a bigint)."""
    digest = hashlib.sha256(f"{namespace}:{region_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def operator_lease_seconds() -> float:
    return float(getattr(settings, "OPERATOR_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


def identity() -> str:
    """Who holds a lock, as shown in pg_stat_activity.application_name: pid first, as names get cut at 63."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _server_options(lease: float) -> str:
    ms = max(1000, int(lease * 1000))
    keepalive_idle = max(1, int(lease / 3))
    keepalive_interval = max(1, int(lease / 9))
    return " ".join(
        f"-c {name}={value}"
        for name, value in (
            ("idle_session_timeout", ms),
            ("tcp_keepalives_idle", keepalive_idle),
            ("tcp_keepalives_interval", keepalive_interval),
            ("tcp_keepalives_count", 3),
            ("tcp_user_timeout", ms // 2),
        )
    )


def _connect(purpose: str, lease: float) -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    params: dict[str, Any] = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "autocommit": True,
        "connect_timeout": max(2, int(lease / 3)),
        "application_name": f"gpucloud-{purpose} {identity()}"[:63],
        # The client side notices a dead server as the server notices a dead client.
        "keepalives": 1,
        "keepalives_idle": max(1, int(lease / 3)),
        "keepalives_interval": max(1, int(lease / 9)),
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, int(lease * 1000)) // 2,
        "options": _server_options(lease),
    }
    params.update({k: v for k, v in (db.get("OPTIONS") or {}).items() if k in ("sslmode", "sslrootcert")})
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None})


class AdvisoryLock:
    """`try_acquire()` to compete; `still_held()` (a round trip) or `lease_valid()` (none) while acting;
    `release()` at the end."""

    def __init__(self, key: int, *, purpose: str, lease_seconds: float | None = None):
        self.key = key
        self.purpose = purpose
        self.lease = float(lease_seconds or operator_lease_seconds())
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.Lock()
        self._confirmed = 0.0  # monotonic time the session was last seen alive
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        conn = _connect(self.purpose, self.lease)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        except Exception:
            conn.close()
            raise
        if not (row and row[0]):
            conn.close()
            return False
        self._conn = conn
        self._confirmed = time.monotonic()
        self._start_heartbeat()
        return True

    def still_held(self) -> bool:
        """True while the lock's session is alive (the lock is held exactly as long as it)."""
        return self._ping() and self.lease_valid()

    def lease_valid(self) -> bool:
        """Held, and the session was confirmed recently enough that the server cannot have released it."""
        return self._conn is not None and time.monotonic() - self._confirmed < self.lease * 2 / 3

    def release(self) -> None:
        self._stop_heartbeat.set()
        with self._mutex:
            conn = self._conn
            if conn is not None:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
                except Exception:
                    logger.info("could not unlock explicitly; closing the session releases it", exc_info=True)
        self._drop()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None and heartbeat is not threading.current_thread():
            heartbeat.join(timeout=self.lease)

    def _ping(self) -> bool:
        with self._mutex:
            conn = self._conn
            if conn is None:
                return False
            try:
                conn.execute("SELECT 1")
            except Exception:
                logger.warning("%s lock session lost; giving up leadership", self.purpose, exc_info=True)
                lost = True
            else:
                self._confirmed = time.monotonic()
                lost = False
        if lost:
            self._drop()
        return not lost

    def _start_heartbeat(self) -> None:
        self._stop_heartbeat = threading.Event()
        stop = self._stop_heartbeat
        every = self.lease / 6

        def beat() -> None:
            while not stop.wait(every) and self._conn is not None:
                self._ping()

        self._heartbeat = threading.Thread(target=beat, name=f"{self.purpose}-lock-heartbeat", daemon=True)
        self._heartbeat.start()

    def _drop(self) -> None:
        with self._mutex:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # closing a dead connection
                conn.close()


class RegionLock(AdvisoryLock):
    """The operator's lock for one region."""

    def __init__(self, region_id: Any, lease_seconds: float | None = None):
        super().__init__(lock_key(region_id), purpose="operator", lease_seconds=lease_seconds)


# The rows of pg_locks (as `l`) that are advisory lock %s, granted, in this database: pg_locks shows a bigint
# key as its high and low 32 bits (classid, objid).
_HELD = (
    "l.locktype = 'advisory' AND l.granted "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((l.classid::bigint << 32) | l.objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)"
)


def lock_holder(key: int) -> str | None:
    """The application_name of the session holding advisory lock `key` in this database, if any."""
    from django.db import connection

    with connection.cursor() as cursor:
        holder = "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        cursor.execute(f"{holder} WHERE {_HELD}", [key])
        row = cursor.fetchone()
    return row[0] if row else None


def region_led(region_id: Any) -> bool:
    """Whether an operator holds the region's lock now (leads it). pg_locks alone: any role may read it,
    while another role's rows of pg_stat_activity hide their details."""
    from django.db import connection

    with connection.cursor() as cursor:
        led = f"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {_HELD})"  # noqa: S608  (constant SQL)
        cursor.execute(led, [lock_key(region_id)])
        row = cursor.fetchone()
    return bool(row and row[0])
