"""PostgreSQL NOTIFY and LISTEN: a change announced to other processes once, and only if, it commits.

`notify(channel, payload)` runs `pg_notify` on the caller's connection, inside its transaction: PostgreSQL
delivers the notification when that transaction commits, and never if it rolls back, so a listener never
acts on a change that did not happen (and needs no `transaction.on_commit`). Listeners hold a connection of
their own (`Listener`), outside every pool: a LISTEN lasts as long as its session, so a pooled connection
handed to the next request would carry it along.

Channels (docs/operator.md "The launch path", docs/api.md "Waiting for a state"):
- INSTANCE_CHANGED, payload "<region_id> <instance_id>": something the operator acts on changed.
- INSTANCE_STATE, payload "<instance_id> <state>": an instance's state changed (every timeline line).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from django.db import connection

logger = logging.getLogger(__name__)

INSTANCE_CHANGED = "gpucloud_instance_changed"
INSTANCE_STATE = "gpucloud_instance_state"

# Django's own keys of OPTIONS; the rest are libpq's (sslmode, ...) and go to the dedicated connection too.
_DJANGO_OPTIONS = {"pool", "isolation_level", "server_side_binding", "assume_role", "cursor_factory"}


def notify(channel: str, payload: str) -> None:
    """Queue a notification in the current transaction (sent at its commit; dropped by a rollback). Outside
    a transaction (autocommit) it is sent at once."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def connect() -> psycopg.Connection[Any]:
    """A connection of its own to the default database, in autocommit (a LISTEN takes effect at once)."""
    db = connection.settings_dict
    params: dict[str, Any] = {k: v for k, v in (db.get("OPTIONS") or {}).items() if k not in _DJANGO_OPTIONS}
    for key, setting in (("dbname", "NAME"), ("user", "USER"), ("password", "PASSWORD"), ("host", "HOST")):
        if db.get(setting):
            params[key] = db[setting]
    if db.get("PORT"):
        params["port"] = db["PORT"]
    params.setdefault("connect_timeout", 5)
    return psycopg.connect(autocommit=True, **params)


class Listener:
    """LISTEN on some channels over a dedicated connection. Use as a context manager; once entered, every
    notification committed afterwards is delivered by `wait` (none is lost between LISTEN and a read of
    the current state made after it: that is how a waiter avoids missing the change it waits for)."""

    def __init__(self, *channels: str) -> None:
        self.channels = channels
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Listener:
        self._conn = connect()
        try:
            for channel in self.channels:
                self._conn.execute(f'LISTEN "{_identifier(channel)}"')
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def wait(self, timeout: float) -> Iterator[tuple[str, str]]:
        """(channel, payload) of the notifications arriving within `timeout` seconds: those already
        received at once, else the first to come and any delivered along with it."""
        if self._conn is None:
            raise RuntimeError("Listener used outside its `with` block")
        for note in self._conn.notifies(timeout=timeout, stop_after=1):
            yield note.channel, note.payload


def _identifier(channel: str) -> str:
    if not channel.replace("_", "").isalnum():
        raise ValueError(f"not a channel name: {channel!r}")
    return channel


def listen_forever(
    channels: tuple[str, ...],
    handle: Callable[[str, str], None],
    stop: threading.Event,
    *,
    poll_seconds: float = 1.0,
    on_listening: Callable[[], None] | None = None,
    backoff_cap: float = 30.0,
) -> None:
    """Until `stop`: LISTEN and hand every notification to `handle(channel, payload)` (which must not
    raise). A lost connection (the database restarting) is made again after a capped, jittered backoff;
    `on_listening` runs each time LISTEN is in place (a caller catches up on what it may have missed)."""
    failures = 0
    while not stop.is_set():
        try:
            with Listener(*channels) as listener:
                failures = 0
                if on_listening is not None:
                    on_listening()
                while not stop.is_set():
                    for channel, payload in listener.wait(poll_seconds):
                        handle(channel, payload)
        except psycopg.Error as exc:
            ceiling = min(backoff_cap, 0.5 * 2**failures)
            failures += 1
            delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311  (jitter, not cryptography)
            logger.warning("listening on %s failed (%s); again in %.1fs", ",".join(channels), exc, delay)
            stop.wait(delay)
