"""When the worker is asked to meter an instance at once (apps/billing/receivers.py): on commit of a line that
stops its billing clock, so the ledger closes the interval; not when the clock starts, which has billed
nothing yet (the periodic pass meters a running instance), so a launch queues no metering task."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.billing import tasks
from apps.instances import services
from apps.instances.states import Action, Observation
from apps.tenants.roles import Role
from tests.conftest import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_owner(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.OWNER)


@pytest.fixture
def metered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    queued: list[str] = []
    monkeypatch.setattr(tasks.meter_instance, "delay", queued.append)
    return queued


def test_a_stop_meters_the_instance_once_committed(
    make_instance: Any, tenant_owner: Actor, metered: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    since = timezone.now() - timedelta(minutes=5)
    instance = make_instance(
        tenant_owner.tenant, created_by=tenant_owner.user, state="running", billing_since=since
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.instance_act(actor=tenant_owner.user, instance=instance, action=Action.STOP)
        assert metered == []  # nothing before the commit

    assert metered == [str(instance.pk)]


def test_a_container_start_that_starts_billing_queues_no_metering(
    make_instance: Any, tenant_owner: Actor, metered: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="pending")
    with django_capture_on_commit_callbacks(execute=True):
        observed = services.instance_observe(
            instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=timezone.now()
        )

    assert observed is not None and observed.billing_since is not None  # the clock started
    assert metered == []
