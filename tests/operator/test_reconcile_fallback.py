"""The Celery fallback queued with every change (receivers.reconcile_changed_instance, the task
tasks.reconcile_instance) does the change's work only if nobody else will: it does nothing once the
instance has moved on from the state the change left at the same generation (the region's leader acted on
the change's NOTIFY), it waits again, with doubling delays, while an operator leads the region (the leader
is behind, as in a burst of launches, or its resync will make up for a missed NOTIFY), and it reconciles
when no operator leads the region, or after RECONCILE_FALLBACK_WAITS waits. Before, each launch of a burst
was reconciled a second time by the worker five seconds after it, beside the leader (a 409 and a read).

The cluster is a boundary here: `reconciler.reconcile` is replaced by a recorder, and the region counts as
connected and reachable, so what is asserted is only whether the fallback goes on to reconcile. The lock is
a real advisory lock on a connection of its own, as an operator's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.operator import reconcile_instances, tasks
from apps.operator.leader import RegionLock
from tests.conftest import Actor

pytestmark = pytest.mark.django_db

LEFT = {"generation": 1, "state": "pending"}  # what a launch leaves


@pytest.fixture
def reconciled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(reconcile_instances, "has_cluster", lambda region: True)
    monkeypatch.setattr(reconcile_instances, "reachable_here", lambda region: True)
    monkeypatch.setattr(
        reconcile_instances.reconciler, "reconcile", lambda instance_id, **kwargs: calls.append(instance_id)
    )
    return calls


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any], int]]:
    calls: list[tuple[Any, dict[str, Any], int]] = []
    monkeypatch.setattr(
        tasks.reconcile_instance,
        "apply_async",
        lambda args, kwargs, countdown: calls.append((args, kwargs, countdown)),
    )
    return calls


@pytest.fixture
def led() -> Iterator[Any]:
    """Hold a region's operator lock, as its leader does, for the region given."""
    held: list[RegionLock] = []

    def lead(region_id: Any) -> None:
        lock = RegionLock(region_id)
        assert lock.try_acquire()
        held.append(lock)

    yield lead
    for lock in held:
        lock.release()


@pytest.mark.parametrize(
    ("state_now", "generation_now", "runs"),
    [
        ("provisioning", 1, False),  # its pod was made: the leader acted on the launch
        ("running", 1, False),
        ("pending", 1, True),  # nobody acted, and nobody leads the region: the fallback does the work
        ("provisioning", 2, True),  # changed again since (that change has its own fallback too)
    ],
)
def test_without_a_leader_the_fallback_reconciles_unless_the_change_was_acted_on(
    make_instance: Any,
    tenant_owner: Actor,
    reconciled: list[Any],
    requeued: list[Any],
    state_now: str,
    generation_now: int,
    runs: bool,
) -> None:
    instance = make_instance(
        tenant_owner.tenant, created_by=tenant_owner.user, state=state_now, generation=generation_now
    )

    tasks.reconcile_instance(str(instance.pk), unless_moved_on_from=LEFT)

    assert reconciled == ([instance.pk] if runs else [])
    assert requeued == []


def test_while_a_leader_has_the_change_the_fallback_waits_longer_each_time_then_reconciles(
    make_instance: Any, tenant_owner: Actor, reconciled: list[Any], requeued: list[Any], led: Any
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="pending")
    led(instance.region_id)

    for waits in range(settings.RECONCILE_FALLBACK_WAITS):
        tasks.reconcile_instance(str(instance.pk), unless_moved_on_from=LEFT, waits=waits)
        assert requeued[-1] == (
            (str(instance.pk),),
            {"unless_moved_on_from": LEFT, "waits": waits + 1},
            settings.RECONCILE_FALLBACK_SECONDS * 2 ** (waits + 1),
        )
        assert reconciled == []
    tasks.reconcile_instance(
        str(instance.pk), unless_moved_on_from=LEFT, waits=settings.RECONCILE_FALLBACK_WAITS
    )
    assert reconciled == [instance.pk]  # the leader never got to it: done here after all
    assert len(requeued) == settings.RECONCILE_FALLBACK_WAITS


def test_a_leader_of_another_region_does_not_hold_the_fallback_back(
    make_instance: Any, tenant_owner: Actor, reconciled: list[Any], requeued: list[Any], led: Any
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="pending")
    led(instance.region_id + 1000)

    tasks.reconcile_instance(str(instance.pk), unless_moved_on_from=LEFT)

    assert reconciled == [instance.pk] and requeued == []


def test_a_reconcile_that_is_no_fallback_always_runs(
    make_instance: Any, tenant_owner: Actor, reconciled: list[Any], led: Any
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="running")
    led(instance.region_id)

    tasks.reconcile_instance(str(instance.pk))  # a volume bound, a region connected

    assert reconciled == [instance.pk]


def test_a_skipped_fallback_reads_one_narrow_row(
    make_instance: Any, tenant_owner: Actor, reconciled: list[Any]
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="provisioning")

    with CaptureQueriesContext(connection) as queries:
        tasks.reconcile_instance(str(instance.pk), unless_moved_on_from=LEFT)

    assert reconciled == []
    assert len(queries.captured_queries) == 1
    sql = queries.captured_queries[0]["sql"]
    assert "JOIN" not in sql and '"instances_instance"."env"' not in sql  # not the reconcile's load
