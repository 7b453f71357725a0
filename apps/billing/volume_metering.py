"""Volume GB-hours into the usage ledger, read from storage's volumes and their events, the way instances
are metered (metering.py) and with the same pure cutting (intervals.py): a volume is billed from its
creation until its deletion is asked for or its claim is lost, whatever its instance does (stopped or
detached included), at size x its frozen price per GiB-hour. A resize starts a new price, so rows are cut
there. A pass continues each volume from where its ledger ends, in chunks of a constant number of queries.
Idempotent: deterministic row ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from apps.billing import intervals
from apps.billing.metering import (
    LedgerRow,
    Metered,
    checkpoint,
    chunks,
    insert_rows,
    ledger_ends,
    rows_for,
    tags_json,
    usage_id,
)
from apps.storage.models import Volume, VolumeEvent, VolumeState
from apps.tenants.models import TenantStatus

METER_PREFIX = "volume_gib_hours:"
SIZE_EVENTS = ("created", "resized")
# The bill ends at the first of these: deletion asked for, or the claim lost (the volume is failed and its
# data gone; it can only be deleted).
END_EVENTS = ("delete_requested", "lost")


def meter_for(storage_class: str) -> str:
    return f"{METER_PREFIX}{storage_class or 'default'}"


def meter_key(volume: Volume) -> str:
    return meter_for(volume.storage_class)


def record_id(volume: Volume, meter: str, start: datetime) -> str:
    return usage_id("volume", str(volume.pk), meter, start)


def billing_of(
    events: Sequence[tuple[datetime, str, int]], price_per_gib_hour: Decimal
) -> tuple[intervals.Interval | None, list[tuple[datetime, Decimal]]]:
    """From a volume's size and end events (at, name, size) in written order: the billed interval (creation
    until deletion was asked for or the claim was lost) and the price per hour from each size change on,
    times floored to the second like the intervals they cut."""
    start = next((at for at, name, _ in events if name == "created"), None)
    if start is None:
        return None, []
    end = next((at for at, name, _ in events if name in END_EVENTS), None)
    prices = [
        (intervals.floor_second(at), price_per_gib_hour * size)
        for at, name, size in events
        if name in SIZE_EVENTS
    ]
    start, end = intervals.floor_second(start), intervals.floor_second(end) if end else None
    if end is not None and end <= start:
        return None, prices
    return intervals.Interval(start, end), prices


def volume_events(volume_ids: Sequence[Any]) -> dict[Any, list[tuple[datetime, str, int]]]:
    """The size and end events of the volumes, in written order: one query (a volume has a handful)."""
    found: dict[Any, list[tuple[datetime, str, int]]] = {}
    for volume_id, at, name, size in (
        VolumeEvent.objects.filter(volume_id__in=volume_ids, name__in=(*SIZE_EVENTS, *END_EVENTS))
        .order_by("volume_id", "created_at", "id")
        .values_list("volume_id", "created_at", "name", "size_gib")
    ):
        found.setdefault(volume_id, []).append((at, name, size))
    return found


def billed_interval_and_prices(
    volume: Volume,
) -> tuple[intervals.Interval | None, list[tuple[datetime, Decimal]]]:
    return billing_of(volume_events([volume.pk]).get(volume.pk, []), volume.price_per_gib_hour)


@dataclass(frozen=True)
class BilledVolume:
    metered: Metered
    volume_id: Any
    price_per_gib_hour: Decimal


def billed_volume(
    *, pk: Any, tenant_id: Any, storage_class: str, price_per_gib_hour: Decimal, tags: str
) -> BilledVolume:
    """`tags`: the volume's tags as JSON text."""
    metered = Metered("volume", str(pk), meter_for(storage_class), tenant_id, tags)
    return BilledVolume(metered, pk, price_per_gib_hour)


def meter_volume_chunk(chunk: Sequence[BilledVolume], *, now: datetime) -> int:
    """The chunk's final, not yet written pieces, each volume from where its ledger ends (its creation when
    it has none), in three queries. Returns how many rows were new."""
    if not chunk:
        return 0
    ends = ledger_ends([v.metered.key for v in chunk])
    events = volume_events([v.volume_id for v in chunk])
    step = checkpoint()
    rows: list[LedgerRow] = []
    for volume in chunk:
        interval, prices = billing_of(events.get(volume.volume_id, []), volume.price_per_gib_hour)
        if interval is None:
            continue
        start = max(interval.start, ends.get(volume.metered.key) or interval.start)
        if interval.end is not None and start >= interval.end:
            continue
        found = intervals.pieces(
            [intervals.Interval(start, interval.end)], checkpoint=step, prices=prices, now=now
        )
        rows += rows_for(volume.metered, found)
    return insert_rows(rows)


def meter_volume(volume: Volume, *, now: datetime | None = None) -> int:
    """Write the volume's final, not yet written pieces. Returns how many rows were new."""
    one = billed_volume(
        pk=volume.pk,
        tenant_id=volume.tenant_id,
        storage_class=volume.storage_class,
        price_per_gib_hour=volume.price_per_gib_hour,
        tags=tags_json(volume.tags),
    )
    return meter_volume_chunk([one], now=now or timezone.now())


def meter_volumes(*, now: datetime | None = None) -> int:
    """Every volume still billed, and those that changed within the catch-up horizon, chunk by chunk. A
    volume of a closed tenant is billed only until its deletion was asked for (the close asks for it): one
    whose deletion has not begun is skipped, a backstop should the close have missed it
    (apps/storage/closing.py)."""
    now = now or timezone.now()
    horizon = now - timedelta(hours=settings.BILLING_CATCH_UP_HOURS)
    not_deleting = ~Q(state__in=(VolumeState.DELETING, VolumeState.DELETED))
    candidates = [
        billed_volume(
            pk=pk, tenant_id=tenant_id, storage_class=storage_class, price_per_gib_hour=price, tags=tags
        )
        for pk, tenant_id, storage_class, price, tags in Volume.objects.filter(
            not_deleting | Q(updated_at__gte=horizon)
        )
        .exclude(Q(tenant__status=TenantStatus.CLOSED) & not_deleting)
        .order_by("pk")
        .annotate(tags_text=Cast("tags", output_field=TextField()))
        .values_list("pk", "tenant_id", "storage_class", "price_per_gib_hour", "tags_text")
    ]
    return sum(meter_volume_chunk(chunk, now=now) for chunk in chunks(candidates))
