"""Metering continues from where the ledger ends (apps/billing/metering.py): a pass over an instance that has
run for days costs what one over an instance started an hour ago costs, in queries and in rows written, and
the ledger it leaves is exactly the one a recomputation of the whole timeline gives."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing import intervals, metering
from apps.billing.models import UsageRecord
from apps.catalog.models import InstanceType, Region
from apps.instances.models import Instance, InstanceEvent
from tests.support.factories import instance_row

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def line(instance: Instance, at: datetime, billable: bool) -> None:
    InstanceEvent.objects.create(
        instance=instance,
        kind="observation",
        name="pod_started" if billable else "pod_gone",
        created_at=at,
        billable=billable,
    )


def running_since(owner: Any, start: datetime, name: str) -> Instance:
    instance = instance_row(
        tenant=owner.tenant,
        instance_type=InstanceType.objects.get(slug="gpu-h100x1"),
        region=Region.objects.get(slug="us-east-1"),
        created_by=owner.user,
        name=name,
        billing_since=start,
        running_since=start,
    )
    line(instance, start, True)
    return instance


def full_recompute(instance: Instance, now: datetime) -> set[str]:
    """The ledger ids a pass over the whole timeline would write."""
    meter = metering.meter_key(instance)
    pieces = intervals.pieces(
        intervals.billed_intervals(metering.transitions_of(instance)),
        checkpoint=metering.checkpoint(),
        prices=metering.prices_for(instance),
        now=now,
    )
    return {metering.record_id(instance, meter, piece.start) for piece in pieces}


def a_pass(instance: Instance, now: datetime, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    """(queries, pieces of billed time computed and sent to the ledger, new rows) of one metering pass.
    Recomputing the whole timeline would send every piece since the start, each pass."""
    computed: list[int] = []
    real = intervals.pieces

    def counting(*args: Any, **kwargs: Any) -> list[intervals.Piece]:
        found = real(*args, **kwargs)
        computed.append(len(found))
        return found

    monkeypatch.setattr(intervals, "pieces", counting)
    with CaptureQueriesContext(connection) as queries:
        written = metering.meter_instance(instance, now=now)
    monkeypatch.setattr(intervals, "pieces", real)
    return len(queries), sum(computed), written


def test_a_pass_costs_the_new_seconds_not_the_instances_age(
    catalog: Any, owner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    old = running_since(owner, now - timedelta(days=3, seconds=17), "old")
    young = running_since(owner, now - timedelta(hours=1, seconds=17), "young")
    # The old one stopped and started again on its way: the line in force where its ledger ends is not its
    # first.
    line(old, now - timedelta(days=2), False)
    line(old, now - timedelta(days=1, hours=23), True)
    for instance in (old, young):
        metering.meter_instance(instance, now=now)  # the backlog, once
    assert (
        UsageRecord.objects.filter(resource_id=str(old.pk)).count()
        > 30 * UsageRecord.objects.filter(resource_id=str(young.pk)).count()
    )

    later = now + 2 * HOUR + timedelta(minutes=10)
    assert a_pass(old, later, monkeypatch) == a_pass(young, later, monkeypatch)
    queries, computed, written = a_pass(old, later + HOUR, monkeypatch)
    assert (computed, written) == (1, 1)  # one checkpoint passed: one row
    assert a_pass(young, later + HOUR, monkeypatch) == (queries, 1, 1)
    assert a_pass(young, later + HOUR + timedelta(minutes=30), monkeypatch) == (
        queries - 1,
        0,
        0,
    )  # no insert
    for instance in (old, young):
        ledger = set(UsageRecord.objects.filter(resource_id=str(instance.pk)).values_list("id", flat=True))
        assert ledger == full_recompute(instance, later + HOUR)


def test_a_stop_after_the_ledgers_end_ends_the_billed_time_there(catalog: Any, owner: Any) -> None:
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    instance = running_since(owner, now - timedelta(hours=2), "stops")
    metering.meter_instance(instance, now=now)
    line(instance, now + timedelta(seconds=90, microseconds=400_000), False)  # stopped 1.5 minutes later
    line(instance, now + timedelta(minutes=10), True)  # and started again

    def billed() -> int:
        rows = UsageRecord.objects.filter(resource_id=str(instance.pk))
        return sum(rows.values_list("quantity_seconds", flat=True))

    metering.meter_instance(instance, now=now + timedelta(minutes=20))
    # The stopped interval is final at once; the new one only up to the next checkpoint.
    assert billed() == 2 * 3600 + 90
    metering.meter_instance(instance, now=now + HOUR + timedelta(seconds=1))
    ledger = set(UsageRecord.objects.filter(resource_id=str(instance.pk)).values_list("id", flat=True))
    assert ledger == full_recompute(instance, now + HOUR + timedelta(seconds=1))
    assert billed() == 2 * 3600 + 90 + 50 * 60  # not a second of the stopped 8.5 minutes
