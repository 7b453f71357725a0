"""Volume GB-hours in the ledger: from creation until deletion is asked for, cut at hourly checkpoints and
resizes, billed whatever the instance does, idempotent, and shown on the invoice with a readable line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing import metering as billing_metering
from apps.billing import volume_metering as metering
from apps.billing.invoices.services import draft_lines
from apps.billing.models import UsageRecord
from apps.storage import services as storage_services
from apps.storage.models import Volume, VolumeEvent
from apps.tenants.models import Tenant, TenantStatus
from tests.storage.volume_helpers import VolumeApi

pytestmark = pytest.mark.django_db

PRICE = Decimal("0.0002")


def _at(volume_id: str, name: str, when: datetime) -> None:
    VolumeEvent.objects.filter(volume_id=volume_id, name=name).update(created_at=when)


def _rows(volume_id: str) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(resource_id=volume_id).order_by("period"))


def test_rows_follow_size_changes_and_end_at_deletion(owner_api: VolumeApi) -> None:
    volume = owner_api.create(size_gib=10)
    owner_api.patch(f"/volumes/{volume['id']}", {"size_gib": 30})
    owner_api.delete(f"/volumes/{volume['id']}")
    start = datetime(2026, 3, 2, 10, 0, 30, 400000, tzinfo=UTC)
    _at(volume["id"], "created", start)  # billed from 10:00:30 (floored to the second)
    _at(volume["id"], "resized", start + timedelta(seconds=75))  # 10:01:45
    _at(volume["id"], "delete_requested", start + timedelta(seconds=150))  # 10:03:00

    assert metering.meter_volume(Volume.objects.get(pk=volume["id"])) == 2
    rows = _rows(volume["id"])
    seen = [(r.period.lower.strftime("%H:%M:%S"), r.quantity_seconds, r.unit_price_per_hour) for r in rows]
    assert seen == [
        ("10:00:30", 75, PRICE * 10),  # cut at the resize
        ("10:01:45", 75, PRICE * 30),  # to the deletion
    ]
    assert {(r.resource_type, r.meter) for r in rows} == {("volume", "volume_gib_hours:sandbox-standard")}
    first_second = int(rows[0].period.lower.timestamp())
    assert rows[0].id == f"volume:{volume['id']}:volume_gib_hours:sandbox-standard:{first_second}"
    assert [r.amount for r in rows] == [
        billing_metering.amount_for(r.quantity_seconds, r.unit_price_per_hour) for r in rows
    ]
    assert rows[1].amount == Decimal("0.000125")  # 75 s of 30 GiB at 0.0002 per GiB-hour
    # Idempotent: again, or from the periodic task, nothing new.
    assert metering.meter_volume(Volume.objects.get(pk=volume["id"])) == 0
    assert billing_metering.meter_all() == 0


def test_a_live_volume_is_billed_while_detached_or_its_instance_is_stopped(owner_api: VolumeApi) -> None:
    volume = owner_api.create(size_gib=100)
    instance = owner_api.launch((volume["id"], "/data")).json()
    owner_api.post(f"/instances/{instance['id']}/stop")  # stopped: no instance time, still volume time
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3, minutes=-10)
    _at(volume["id"], "created", start)
    now = start + timedelta(hours=2, minutes=5, seconds=20)
    written = billing_metering.meter_all(now=now)  # the periodic metering task meters volumes too
    rows = _rows(volume["id"])
    assert written >= len(rows) == 2
    # Only up to the last hourly checkpoint, never past `now` (the wallet adds the rest: open usage).
    assert sum(r.quantity_seconds for r in rows) == int(
        (now.replace(minute=0, second=0) - start).total_seconds()
    )
    assert all(r.unit_price_per_hour == PRICE * 100 for r in rows)
    owner_api.delete(f"/instances/{instance['id']}")  # terminated; the volume is kept and still billed
    assert Volume.objects.get(pk=volume["id"]).state == "available"
    later = billing_metering.meter_all(now=now + timedelta(hours=1))
    assert later > 0 and _rows(volume["id"])[-1].period.upper > rows[-1].period.upper


def test_the_invoice_line_says_volume_storage(owner_api: VolumeApi) -> None:
    volume = owner_api.create(size_gib=10)
    owner_api.delete(f"/volumes/{volume['id']}")
    start = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
    _at(volume["id"], "created", start)
    _at(volume["id"], "delete_requested", start + timedelta(hours=2))
    metering.meter_volume(Volume.objects.get(pk=volume["id"]))
    [line] = draft_lines(tenant=owner_api.actor.tenant, month=start.date().replace(day=1))
    assert line.description == "Volume storage hours (sandbox-standard class)"
    assert (line.quantity_seconds, line.unit_price_per_hour, line.amount) == (
        7200,
        PRICE * 10,
        Decimal("0.00"),
    )


def test_a_lost_volume_is_billed_until_the_loss(owner_api: VolumeApi) -> None:
    volume = owner_api.create(size_gib=10)
    storage_services.volume_observe(volume_id=volume["id"], observation="lost", message="Lost.")
    assert Volume.objects.get(pk=volume["id"]).state == "failed"
    start = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
    _at(volume["id"], "created", start)
    _at(volume["id"], "lost", start + timedelta(seconds=150))

    metering.meter_volume(Volume.objects.get(pk=volume["id"]), now=start + timedelta(days=2))
    rows = _rows(volume["id"])
    assert rows[-1].period.upper == start + timedelta(seconds=150)
    assert sum(r.quantity_seconds for r in rows) == 150
    # Deleting the failed volume later adds nothing: the bill ended at the loss.
    owner_api.delete(f"/volumes/{volume['id']}")
    _at(volume["id"], "delete_requested", start + timedelta(hours=5))
    assert metering.meter_volume(Volume.objects.get(pk=volume["id"]), now=start + timedelta(days=2)) == 0


def test_a_closed_tenants_volume_whose_deletion_never_began_is_not_billed(owner_api: VolumeApi) -> None:
    """The backstop: tenant_close begins every volume's deletion, but a volume it missed (a tenant closed
    before it did so) must not be billed for ever."""
    volume = owner_api.create(size_gib=10)
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    _at(volume["id"], "created", start)
    Tenant.objects.filter(pk=owner_api.actor.tenant.pk).update(status=TenantStatus.CLOSED)
    assert Volume.objects.get(pk=volume["id"]).state == "available"
    assert billing_metering.meter_all() == 0
    assert _rows(volume["id"]) == []
