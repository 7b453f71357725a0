"""apps/operator/changes.py: the leader reconciles an instance the moment its change commits (LISTEN on
gpucloud_instance_changed). The unit tests record the ids handed to the reconcile (the cluster is the
sandbox tests' business, below and in test_changes_sandbox.py); the NOTIFYs are real, from the services."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import transaction

from apps.core import notify
from apps.instances import services
from apps.instances.states import Action, State
from apps.operator.changes import ChangeListener
from tests.conftest import Actor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listening() -> Iterator[Callable[..., tuple[ChangeListener, list[str]]]]:
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(
        region_id: Any, reconcile: Callable[[str], None] | None = None
    ) -> tuple[ChangeListener, list[str]]:
        seen: list[str] = []
        listener = ChangeListener(region_id, workers=2, reconcile=reconcile or seen.append)
        threads.extend(listener.threads(stop, "test-changes"))
        for thread in threads:
            thread.start()
        assert listener.listening.wait(10)
        return listener, seen

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_committed_change_is_reconciled_at_once(
    listening: Any, make_instance: Callable[..., Any], owner: Actor
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, state=State.RUNNING)
    _, seen = listening(instance.region_id)
    services.instance_act(actor=None, instance=instance, action=Action.STOP)
    assert _until(lambda: seen == [str(instance.pk)])


def test_a_rolled_back_change_and_other_regions_are_ignored(
    listening: Any, make_instance: Callable[..., Any], owner: Actor
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, state=State.RUNNING)
    elsewhere = make_instance(owner.tenant, created_by=owner.user, state=State.RUNNING, region="eu-west-1")
    _, seen = listening(instance.region_id)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.instance_act(actor=None, instance=instance, action=Action.STOP)
        raise RuntimeError("roll back")
    services.instance_act(actor=None, instance=elsewhere, action=Action.STOP)
    notify.notify(notify.INSTANCE_CHANGED, f"{instance.region_id} not-a-uuid")
    marker = uuid.uuid4()
    notify.notify(notify.INSTANCE_CHANGED, f"{instance.region_id} {marker}")
    assert _until(lambda: seen == [str(marker)])  # the only one of this region that committed


def test_one_instance_is_never_reconciled_twice_at_once(listening: Any, catalog: Any) -> None:
    region_id, key = "7", str(uuid.uuid4())
    running, overlaps, calls = [0], [0], []
    gate = threading.Lock()

    def slow(instance_id: str) -> None:
        with gate:
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
        calls.append(instance_id)
        time.sleep(0.3)
        with gate:
            running[0] -= 1

    listener, _ = listening(region_id, reconcile=slow)
    for _ in range(3):
        listener.heard(notify.INSTANCE_CHANGED, f"{region_id} {key}")  # waiting: queued once
    assert _until(lambda: running[0] == 1)
    for _ in range(3):
        listener.heard(notify.INSTANCE_CHANGED, f"{region_id} {key}")  # during its run: once more, after
    assert _until(lambda: len(calls) == 2 and running[0] == 0)
    time.sleep(0.4)
    assert calls == [key, key] and overlaps == [1]


def test_a_failing_reconcile_does_not_stop_the_workers(listening: Any, catalog: Any) -> None:
    region_id, bad, good = "7", str(uuid.uuid4()), str(uuid.uuid4())
    done: list[str] = []

    def reconcile(instance_id: str) -> None:
        if instance_id == bad:
            raise RuntimeError("apiserver away")
        done.append(instance_id)

    listener, _ = listening(region_id, reconcile=reconcile)
    listener.heard(notify.INSTANCE_CHANGED, f"{region_id} {bad}")
    listener.heard(notify.INSTANCE_CHANGED, f"{region_id} {good}")
    assert _until(lambda: done == [good])
