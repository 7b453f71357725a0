"""Volume GB-hours into the usage ledger, read from storage's volumes and their events, the way instances
are metered (metering.py) and with the same pure cutting (intervals.py): a volume is billed from its
creation until its deletion is asked for or its claim is lost, whatever its instance does (stopped or
detached included), at size x its frozen price per GiB-hour. A resize starts a new price, so windows are
cut there. Idempotent: deterministic row ids."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.billing import intervals
from apps.billing.metering import usage_id, write_usage
from apps.storage.models import Volume, VolumeEvent, VolumeState
from apps.tenants.models import TenantStatus

METER_PREFIX = "volume_gib_hours:"
SIZE_EVENTS = ("created", "resized")
# The bill ends at the first of these: deletion asked for, or the claim lost (the volume is failed and its
# data gone; it can only be deleted).
END_EVENTS = ("delete_requested", "lost")


def meter_key(volume: Volume) -> str:
    return f"{METER_PREFIX}{volume.storage_class or 'default'}"


def record_id(volume: Volume, meter: str, start: datetime) -> str:
    return usage_id("volume", str(volume.pk), meter, start)


def billed_interval_and_prices(
    volume: Volume,
) -> tuple[intervals.Interval | None, list[tuple[datetime, Decimal]]]:
    """The billed interval (creation until deletion was asked for or the claim was lost) and the price per
    hour from each size change on, times floored to the second like the intervals they cut."""
    rows = list(
        VolumeEvent.objects.filter(volume=volume, name__in=(*SIZE_EVENTS, *END_EVENTS))
        .order_by("created_at", "id")
        .values_list("created_at", "name", "size_gib")
    )
    start = next((at for at, name, _ in rows if name == "created"), None)
    if start is None:
        return None, []
    end = next((at for at, name, _ in rows if name in END_EVENTS), None)
    prices = [
        (intervals.floor_second(at), volume.price_per_gib_hour * size)
        for at, name, size in rows
        if name in SIZE_EVENTS
    ]
    start, end = intervals.floor_second(start), intervals.floor_second(end) if end else None
    if end is not None and end <= start:
        return None, prices
    return intervals.Interval(start, end), prices


def meter_volume(volume: Volume, *, now: datetime | None = None) -> int:
    """Write the volume's final, not yet written pieces. Returns how many rows were new."""
    now = now or timezone.now()
    interval, prices = billed_interval_and_prices(volume)
    if interval is None:
        return 0
    meter = meter_key(volume)
    found = intervals.pieces(
        [interval], window=timedelta(seconds=settings.BILLING_WINDOW_SECONDS), prices=prices, now=now
    )
    return write_usage(
        tenant_id=volume.tenant_id,
        resource_type="volume",
        resource_id=str(volume.pk),
        meter=meter,
        pieces=found,
    )


def meter_volumes(*, now: datetime | None = None) -> int:
    """Every volume still billed, and those that changed within the catch-up horizon. A volume of a closed
    tenant is billed only until its deletion was asked for (the close asks for it): one whose deletion has
    not begun is skipped, a backstop should the close have missed it (apps/storage/closing.py)."""
    now = now or timezone.now()
    horizon = now - timedelta(hours=settings.BILLING_CATCH_UP_HOURS)
    not_deleting = ~Q(state__in=(VolumeState.DELETING, VolumeState.DELETED))
    candidates = Volume.objects.filter(not_deleting | Q(updated_at__gte=horizon)).exclude(
        Q(tenant__status=TenantStatus.CLOSED) & not_deleting
    )
    return sum(meter_volume(volume, now=now) for volume in candidates)
