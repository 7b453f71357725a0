"""A state change happens at one moment, which the instance's clock (running_since, accrued seconds) and its
timeline (the event the ledger is metered from) both record. They used to take two readings of the time, so
a process paused between the two (a loaded host, a GC pause) billed a different time than the instance
showed; the resilience drills saw it (docs/resilience.md, tests/chaos/)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Action, Observation

pytestmark = pytest.mark.django_db


class Clock:
    """The time as the services read it: fixed moments, far from the wall clock."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at


def test_clock_timeline_and_ledger_agree_on_each_transition(tenant_owner, launch, monkeypatch) -> None:
    instance = Instance.objects.get(pk=launch(tenant_owner, name="timed").json()["id"])
    clock = Clock(timezone.now().replace(microsecond=0) - timedelta(hours=2))
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=clock.now))
    started = clock.at

    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_CREATED)
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_READY)
    clock.at = started + timedelta(seconds=600)
    services.instance_act(actor=None, instance=instance, action=Action.STOP)
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE)

    instance.refresh_from_db()
    ready = InstanceEvent.objects.get(instance=instance, name="pod_ready")
    stop = InstanceEvent.objects.get(instance=instance, name="stop")
    assert (ready.created_at, stop.created_at) == (started, started + timedelta(seconds=600))
    assert instance.accrued_running_seconds == 600
    metering.meter_instance(instance, now=timezone.now())
    billed = sum(
        UsageRecord.objects.filter(resource_id=str(instance.pk)).values_list("quantity_seconds", flat=True)
    )
    assert billed == instance.accrued_running_seconds == 600
