"""apps/core/notify.py: a NOTIFY reaches listeners when its transaction commits, never on a rollback, and
the instance services announce changes and states through it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from apps.core import notify
from apps.instances import services
from apps.instances.states import Action, State
from tests.conftest import Actor

pytestmark = pytest.mark.django_db(transaction=True)


def _drain(listener: notify.Listener, seconds: float = 0.5) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    while batch := list(listener.wait(seconds)):
        got.extend(batch)
    return got


def test_delivered_at_commit_not_before() -> None:
    with notify.Listener("gpucloud_test") as listener:
        with transaction.atomic():
            notify.notify("gpucloud_test", "hello")
            assert _drain(listener, 0.3) == []  # still in the transaction
        assert _drain(listener) == [("gpucloud_test", "hello")]


def test_never_delivered_on_rollback() -> None:
    with notify.Listener("gpucloud_test") as listener:
        with pytest.raises(RuntimeError), transaction.atomic():
            notify.notify("gpucloud_test", "lost")
            raise RuntimeError("roll back")
        with transaction.atomic():
            notify.notify("gpucloud_test", "kept")
        assert _drain(listener) == [("gpucloud_test", "kept")]


def test_channel_names_are_checked() -> None:
    with pytest.raises(ValueError, match="channel"):
        notify.Listener('x"; DROP TABLE y; --').__enter__()


def test_listen_forever_hands_notifications_over_and_stops() -> None:
    stop, got, listening = threading.Event(), [], threading.Event()
    thread = threading.Thread(
        target=notify.listen_forever,
        args=(("gpucloud_test",), lambda c, p: got.append((c, p)), stop),
        kwargs={"poll_seconds": 0.1, "on_listening": listening.set},
    )
    thread.start()
    try:
        assert listening.wait(10)
        notify.notify("gpucloud_test", "one")  # autocommit: sent at once
        for _ in range(50):
            if got:
                break
            stop.wait(0.1)
        assert got == [("gpucloud_test", "one")]
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_instance_services_announce_change_and_state(make_instance: Callable[..., Any], owner: Actor) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, state=State.RUNNING)
    with notify.Listener(notify.INSTANCE_CHANGED, notify.INSTANCE_STATE) as listener:
        services.instance_act(actor=None, instance=instance, action=Action.STOP)
        got = _drain(listener)
    assert (notify.INSTANCE_CHANGED, f"{instance.region_id} {instance.pk}") in got
    assert (notify.INSTANCE_STATE, f"{instance.pk} {State.STOPPING}") in got
