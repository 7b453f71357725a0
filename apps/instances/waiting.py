"""Long-poll on an instance's state: `GET .../instances/{id}?wait=running&timeout=30` (docs/api.md
"Waiting for a state").

The waiter LISTENs on gpucloud_instance_state (every timeline line NOTIFYs "<instance_id> <state>" as its
transaction commits, services._event) on a connection of its own, and only then reads the current state: a
change committed between the read and the LISTEN would otherwise be lost, and the waiter would sleep through
the very change it waits for. While it waits it holds no connection of the process's pool (the request's own
is handed back first), only its thread and its LISTEN connection; at most INSTANCE_WAIT_MAX_WAITERS requests
of a process wait at once, the rest are refused with 503 and Retry-After, so waiters never take every
server thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from rest_framework import status

from apps.core import notify
from apps.core.errors import DomainError, InvalidInput
from apps.instances.states import State

# States it cannot leave by itself towards another: a wait returns on them whatever it waits for.
ENDS = frozenset({State.FAILED, State.TERMINATED})
MAX_TIMEOUT_SECONDS = 60
DEFAULT_TIMEOUT_SECONDS = 30
RETRY_AFTER_SECONDS = 1
# The response header saying how the wait ended.
OUTCOME_HEADER = "Gpucloud-Wait"


class Outcome(StrEnum):
    REACHED = "reached"  # the instance is in one of the awaited states
    ENDED = "ended"  # it is failed or terminated, and that was not awaited
    TIMEOUT = "timeout"  # neither, within the timeout


class WaitUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "wait_unavailable"
    retry_after = RETRY_AFTER_SECONDS


def parse(params: Any) -> tuple[frozenset[str], int] | None:
    """The awaited states and the timeout from the query (None without `wait`): 400 naming the field."""
    raw_wait, raw_timeout = params.get("wait"), params.get("timeout")
    if raw_wait is None:
        if raw_timeout is not None:
            raise InvalidInput("timeout: only with wait.", fields={"timeout": ["Only with wait."]})
        return None
    names = [part.strip() for part in raw_wait.split(",")]
    unknown = [name for name in names if name not in State.__members__.values()]
    if not raw_wait.strip() or unknown or "" in names:
        choices = ", ".join(State)
        problem = f"Use one or more of {choices}, separated by commas."
        raise InvalidInput(f"wait: {problem}", fields={"wait": [problem]})
    timeout = DEFAULT_TIMEOUT_SECONDS
    if raw_timeout is not None:
        try:
            timeout = int(raw_timeout)
        except ValueError:
            timeout = 0
        if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
            problem = f"Use a whole number of seconds from 1 to {MAX_TIMEOUT_SECONDS}."
            raise InvalidInput(f"timeout: {problem}", fields={"timeout": [problem]})
    return frozenset(names), timeout


_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def _waiter_slots() -> threading.BoundedSemaphore:
    global _slots
    size = int(settings.INSTANCE_WAIT_MAX_WAITERS)
    with _slots_lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


def outcome_of(state: str | None, wanted: Collection[str]) -> Outcome | None:
    if state in wanted:
        return Outcome.REACHED
    if state is None or state in ENDS:
        return Outcome.ENDED
    return None


def _hand_back_connection() -> None:
    """Give the request's pooled connection back while waiting (a request in a transaction keeps it)."""
    if "pool" in (connection.settings_dict.get("OPTIONS") or {}) and not connection.in_atomic_block:
        connection.close()


def wait_for_state(
    instance_id: Any, wanted: Collection[str], timeout: float, *, current_state: Callable[[], str | None]
) -> Outcome:
    """Block until the instance is in a `wanted` state or an end, or `timeout` seconds pass.
    `current_state` reads the row (None: gone); it is called once, after LISTEN is in place."""
    slots = _waiter_slots()
    if not slots.acquire(blocking=False):
        raise WaitUnavailable(
            "Too many requests are waiting on this server; poll again shortly or retry.",
            code="too_many_waiters",
        )
    deadline = time.monotonic() + timeout
    try:
        with notify.Listener(notify.INSTANCE_STATE) as listener:
            state = current_state()
            _hand_back_connection()
            key = str(instance_id)
            while (outcome := outcome_of(state, wanted)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return Outcome.TIMEOUT
                for _, payload in listener.wait(left):
                    heard, _, new_state = payload.partition(" ")
                    if heard == key:
                        state = new_state
            return outcome
    except psycopg.OperationalError as exc:
        raise WaitUnavailable("The database cannot be reached to wait on; retry shortly.") from exc
    finally:
        slots.release()
