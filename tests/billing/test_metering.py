"""The ledger written from real instance timelines: exact, idempotent, non-overlapping, append-only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.billing import metering
from apps.billing.models import PriceVersion, UsageRecord
from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Action, Observation
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance(owner):
    seed()
    return services.instance_launch(
        actor=owner.user,
        tenant=owner.tenant,
        req=services.LaunchRequest(instance_type="gpu-h100x1", region="us-east-1", image="pytorch"),
    )


def _ran(instance, start, seconds):
    """Write a timeline: running from `start` for `seconds`, then stopping."""
    InstanceEvent.objects.create(
        instance=instance,
        kind="observation",
        name="pod_ready",
        from_state="provisioning",
        to_state="running",
        created_at=start,
        billable=True,
    )
    InstanceEvent.objects.create(
        instance=instance,
        kind="action",
        name="stop",
        from_state="running",
        to_state="stopping",
        created_at=start + timedelta(seconds=seconds),
    )


def test_rows_cover_the_running_time_exactly_and_rerunning_writes_nothing(instance):
    start = (timezone.now() - timedelta(hours=3)).replace(minute=59, second=10, microsecond=0)
    _ran(instance, start, 200)

    # One row to the hour's checkpoint, one to the stop: rows end at events and checkpoints, not minutes.
    assert metering.meter_instance(instance) == 2
    assert metering.meter_instance(instance) == 0
    assert metering.meter_all() == 0

    rows = list(UsageRecord.objects.filter(resource_id=str(instance.pk)).order_by("period"))
    assert [r.quantity_seconds for r in rows] == [50, 150]
    assert rows[0].period.upper == rows[1].period.lower == start + timedelta(seconds=50)
    # Rated per row at 6 places: 0.034583 + 0.103750.
    assert sum(r.amount for r in rows) == Decimal("0.138333")
    assert all(r.meter == "instance_seconds:gpu-h100x1" and r.tenant_id == instance.tenant_id for r in rows)
    assert rows[0].id == f"instance:{instance.pk}:instance_seconds:gpu-h100x1:{int(start.timestamp())}"


def test_price_change_while_running_bills_each_part_at_its_own_price(instance):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    PriceVersion.objects.create(
        instance_type=instance.instance_type,
        price_per_hour=Decimal("3.6000"),
        effective_from=start + timedelta(minutes=90),
    )
    _ran(instance, start, 2 * 3600)

    metering.meter_instance(instance)

    rows = UsageRecord.objects.filter(resource_id=str(instance.pk)).order_by("period")
    assert [(r.quantity_seconds, r.unit_price_per_hour, r.amount) for r in rows] == [
        (3600, Decimal("2.4900"), Decimal("2.490000")),  # the first hour, to its checkpoint
        (1800, Decimal("2.4900"), Decimal("1.245000")),  # to the price change, mid-hour
        (1800, Decimal("3.6000"), Decimal("1.800000")),  # the rest of the hour, at the new price
    ]


def test_rows_carry_the_instances_tags_as_they_were_when_metered(instance):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    # Billing lines are dated in the order they are written: the launch came first.
    InstanceEvent.objects.filter(instance=instance).update(created_at=start - timedelta(seconds=10))
    InstanceEvent.objects.create(
        instance=instance, kind="observation", name="pod_ready", created_at=start, billable=True
    )
    Instance.objects.filter(pk=instance.pk).update(tags={"team": "vision", "env": "prod"})
    instance.refresh_from_db()
    metering.meter_instance(instance, now=start + timedelta(hours=1, minutes=5))
    InstanceEvent.objects.create(
        instance=instance, kind="action", name="stop", created_at=start + timedelta(hours=3)
    )
    Instance.objects.filter(pk=instance.pk).update(tags={"team": "nlp"})
    instance.refresh_from_db()
    metering.meter_instance(instance)

    rows = UsageRecord.objects.filter(resource_id=str(instance.pk)).order_by("period")
    # A tag changed later does not rewrite the rows metered before the change.
    assert [r.tags for r in rows] == [{"team": "vision", "env": "prod"}, {"team": "nlp"}, {"team": "nlp"}]


def test_overlapping_usage_of_one_resource_and_meter_is_refused(instance):
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    _ran(instance, start, 60)
    metering.meter_instance(instance)
    row = UsageRecord.objects.filter(resource_id=str(instance.pk)).first()
    assert row is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(
            id="something-else",
            tenant_id=row.tenant_id,
            resource_type="instance",
            resource_id=row.resource_id,
            meter=row.meter,
            period=DateTimeTZRange(
                row.period.lower + timedelta(seconds=1), row.period.upper + timedelta(seconds=5), "[)"
            ),
            quantity_seconds=5,
            unit_price_per_hour=Decimal("1"),
            amount=Decimal("0.001"),
        )


def test_the_ledger_is_append_only(instance):
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    _ran(instance, start, 30)
    metering.meter_instance(instance)
    for statement in ("UPDATE billing_usagerecord SET amount = 0", "DELETE FROM billing_usagerecord"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as c,
        ):
            c.execute(statement)


def test_leaving_running_meters_on_commit(instance, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.instance_observe(instance_id=instance.pk, observation=Observation.POD_READY)
    started = timezone.now() - timedelta(seconds=125)
    InstanceEvent.objects.filter(instance=instance, billable=True).update(created_at=started)
    Instance.objects.filter(pk=instance.pk).update(billing_since=started)
    with django_capture_on_commit_callbacks(execute=True):
        services.instance_act(actor=None, instance=instance, action=Action.STOP)
    seconds = sum(
        UsageRecord.objects.filter(resource_id=str(instance.pk)).values_list("quantity_seconds", flat=True)
    )
    assert 124 <= seconds <= 126
