"""The Celery fallback queued with every change (receivers.reconcile_changed_instance) does nothing once the
instance has moved on from the state the change left at the same generation: the region's leader acted on
the change's NOTIFY, and reconciling again would send the instance's objects a second time (a 409 and a read
per launch, 5 s after each one during a burst). A change nobody acted on, or one followed by another change,
is reconciled as before.

The cluster is a boundary here: `reconciler.reconcile` is replaced by a recorder, and the region counts as
connected and reachable, so what is asserted is only whether the fallback goes on to reconcile."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.operator import reconcile_instances
from tests.conftest import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def reconciled(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(reconcile_instances, "has_cluster", lambda region: True)
    monkeypatch.setattr(reconcile_instances, "reachable_here", lambda region: True)
    monkeypatch.setattr(
        reconcile_instances.reconciler, "reconcile", lambda instance_id, **kwargs: calls.append(instance_id)
    )
    return calls


@pytest.mark.parametrize(
    ("state_now", "generation_now", "runs"),
    [
        ("provisioning", 1, False),  # its pod was made: the leader acted on the launch
        ("running", 1, False),
        ("pending", 1, True),  # nobody acted: the fallback does the launch's work
        ("provisioning", 2, True),  # changed again since: reconciled (that change has its own fallback too)
    ],
)
def test_a_launchs_fallback_reconciles_only_if_nobody_acted_on_it(
    make_instance: Any,
    tenant_owner: Actor,
    reconciled: list[Any],
    state_now: str,
    generation_now: int,
    runs: bool,
) -> None:
    instance = make_instance(
        tenant_owner.tenant, created_by=tenant_owner.user, state=state_now, generation=generation_now
    )

    reconcile_instances.reconcile_instance(
        str(instance.pk), unless_moved_on_from={"generation": 1, "state": "pending"}
    )

    assert reconciled == ([instance.pk] if runs else [])


def test_a_reconcile_that_is_no_fallback_always_runs(
    make_instance: Any, tenant_owner: Actor, reconciled: list[Any]
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="running")

    reconcile_instances.reconcile_instance(str(instance.pk))  # a volume bound, a region connected

    assert reconciled == [instance.pk]


def test_a_skipped_fallback_reads_one_narrow_row(
    make_instance: Any, tenant_owner: Actor, reconciled: list[Any]
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="provisioning")

    with CaptureQueriesContext(connection) as queries:
        reconcile_instances.reconcile_instance(
            str(instance.pk), unless_moved_on_from={"generation": 1, "state": "pending"}
        )

    assert reconciled == []
    assert len(queries.captured_queries) == 1
    sql = queries.captured_queries[0]["sql"]
    assert "JOIN" not in sql and '"instances_instance"."env"' not in sql  # not the reconcile's load
