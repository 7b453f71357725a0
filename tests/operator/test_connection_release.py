"""The operator's threads hand their database connection back once an event is handled and before they
wait: with the pool (config/settings/database.py) a process's threads share a few connections, and a pod
worker idling between events with its own would starve the others until their pool timeout.

The pool hands a connection back when Django closes it, which close_old_connections does for a connection
without a lifetime (CONN_MAX_AGE 0, what the pooled settings use); the tests' settings are unpooled with a
60 s lifetime, so these tests set 0 for the threads they start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from apps.instances.models import Instance
from apps.operator import watcher
from apps.operator.operator_loop import Operator, OperatorConfig

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(work: Callable[[], Any]) -> bool:
    """Runs `work` in a fresh thread (its own connection); whether that thread still holds one after."""
    held: list[bool] = []

    def run() -> None:
        try:
            work()
            held.append(connection.connection is not None)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert held, "the thread did not finish its work"
    return held[0]


@pytest.fixture(autouse=True)
def pooled_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)


def test_a_pod_worker_holds_no_connection_while_waiting_for_the_next_event() -> None:
    handled: list[str] = []

    def handler(kind: str, obj: dict[str, Any]) -> None:
        handled.append(str(Instance.objects.count()))  # the database, as PodHandler uses it

    pod = {"metadata": {"namespace": "t-x", "name": "i-x", "labels": {}}}
    assert not _in_thread(lambda: watcher._dispatch(handler, "MODIFIED", pod, "pods@test", measured=False))
    assert handled == ["0"]


def test_a_failing_handler_hands_its_connection_back_too() -> None:
    def handler(kind: str, obj: dict[str, Any]) -> None:
        Instance.objects.count()
        raise RuntimeError("the apiserver went away")

    pod = {"metadata": {"namespace": "t-x", "name": "i-x", "labels": {}}}
    assert not _in_thread(lambda: watcher._dispatch(handler, "MODIFIED", pod, "pods@test", measured=False))


def test_the_operator_holds_no_connection_between_discoveries() -> None:
    operator = Operator(OperatorConfig(), regions=["nowhere"])
    assert not _in_thread(operator.discover)
    assert operator.threads == {}
