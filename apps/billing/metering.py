"""Writing the usage ledger from instances' timelines. Idempotent: run it any number of times, from any
process, after any crash; each final piece of running time is written exactly once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone

from apps.billing import intervals
from apps.billing.models import AMOUNT_PLACES, LedgerKind, PriceVersion, UsageRecord
from apps.instances.models import Instance, InstanceEvent

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# The timeline lines that start and stop billing (services._event); copies of Kubernetes Events never do.
BILLING_EVENT_KINDS = ("action", "observation")


def meter_key(instance: Instance) -> str:
    return f"instance_seconds:{instance.instance_type.slug}"


def amount_for(seconds: int, price_per_hour: Decimal) -> Decimal:
    return (price_per_hour * Decimal(seconds) / Decimal(3600)).quantize(AMOUNT_PLACES, rounding=ROUND_HALF_UP)


def prices_for(instance: Instance) -> list[tuple[datetime, Decimal]]:
    versions = list(
        PriceVersion.objects.filter(instance_type_id=instance.instance_type_id)
        .order_by("effective_from")
        .values_list("effective_from", "price_per_hour")
    )
    if not versions or versions[0][0] > EARLIEST:
        # Before any recorded version, the price the instance was launched at.
        versions.insert(0, (EARLIEST, instance.price_per_hour))
    return versions


def transitions_of(instance: Instance, *, since: datetime | None = None) -> list[intervals.Transition]:
    """The timeline's billing flags in the order they were written (id): a container's start is dated by
    the kubelet, a little before the line that records it, and kube events may sit between the two.

    `since` (where the ledger ends): only what billing did from then on: the flag in force at `since` (the
    last line dated at or before it; billing lines are dated in the order they are written, services
    keep the clock so) as a line at `since`, then the lines after it. Two index reads, however long the
    timeline."""
    lines = InstanceEvent.objects.filter(instance=instance, kind__in=BILLING_EVENT_KINDS)
    if since is None:
        rows = lines.order_by("id").values_list("created_at", "billable")
        return [intervals.Transition(at, billable) for at, billable in rows]
    in_force = (
        lines.filter(created_at__lte=since).order_by("-created_at", "-id").values_list("billable").first()
    )
    later = lines.filter(created_at__gt=since).order_by("id").values_list("created_at", "billable")
    head = [intervals.Transition(since, in_force[0])] if in_force is not None else []
    return head + [intervals.Transition(at, billable) for at, billable in later]


def ledger_end(resource_id: str, meter: str) -> datetime | None:
    """Where the resource's usage rows on `meter` end (usage_resource_meter_end_idx: one probe). Metering
    writes a pass's final pieces in one transaction, in time order and never changed after, so the ledger
    holds every final piece before this moment and none after."""
    return (
        UsageRecord.objects.filter(resource_id=resource_id, meter=meter, kind=LedgerKind.USAGE)
        .annotate(end=Upper("period"))
        .order_by("-end")
        .values_list("end", flat=True)
        .first()
    )


def record_id(instance: Instance, meter: str, start: datetime) -> str:
    return usage_id("instance", str(instance.pk), meter, start)


def usage_id(resource_type: str, resource_id: str, meter: str, start: datetime) -> str:
    """Deterministic: writing the same piece twice is a no-op (the primary key refuses the second)."""
    return f"{resource_type}:{resource_id}:{meter}:{int(start.timestamp())}"


def write_usage(
    *, tenant_id: Any, resource_type: str, resource_id: str, meter: str, pieces: Iterable[intervals.Piece]
) -> int:
    """Append the pieces of one resource's meter to the ledger; returns how many rows were new."""
    rows = [
        UsageRecord(
            id=usage_id(resource_type, resource_id, meter, piece.start),
            tenant_id=tenant_id,
            resource_type=resource_type,
            resource_id=resource_id,
            meter=meter,
            period=DateTimeTZRange(piece.start, piece.end, "[)"),
            quantity_seconds=piece.seconds,
            unit_price_per_hour=piece.price_per_hour,
            amount=amount_for(piece.seconds, piece.price_per_hour),
            kind=LedgerKind.USAGE,
        )
        for piece in pieces
    ]
    if not rows:
        return 0
    # Counted among this pass's ids only: a count over the resource's rows would grow with its age.
    existing = UsageRecord.objects.filter(id__in=[row.id for row in rows])
    before = existing.count()
    with transaction.atomic():
        # ON CONFLICT DO NOTHING: a row written before (same id) or overlapping one (exclusion) is kept as is.
        UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)
    return existing.count() - before


def meter_instance(instance: Instance, *, now: datetime | None = None) -> int:
    """Write the instance's final, not yet written pieces of billed time, from where its ledger ends: a
    pass costs the new seconds, not the instance's age (docs/billing.md, "Metering"). Returns how many rows
    were new."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.BILLING_WINDOW_SECONDS)
    meter = meter_key(instance)
    since = ledger_end(str(instance.pk), meter)
    found = intervals.pieces(
        intervals.billed_intervals(transitions_of(instance, since=since)),
        window=window,
        prices=prices_for(instance),
        now=now,
    )
    return write_usage(
        tenant_id=instance.tenant_id,
        resource_type="instance",
        resource_id=str(instance.pk),
        meter=meter,
        pieces=found,
    )


def meter_all(*, now: datetime | None = None) -> int:
    """The periodic task: meter billed instances, and any that changed within the catch-up horizon (so an
    outage of the worker shorter than that loses nothing), then volumes (volume_metering.py).
    Returns how many rows were new."""
    now = now or timezone.now()
    horizon = now - timedelta(hours=settings.BILLING_CATCH_UP_HOURS)
    candidates = Instance.objects.select_related("instance_type").filter(
        Q(billing_since__isnull=False) | Q(updated_at__gte=horizon)
    )
    written = sum(meter_instance(instance, now=now) for instance in candidates)
    from apps.billing.volume_metering import (
        meter_volumes,  # volumes are billed like instance time (it imports this)
    )

    return written + meter_volumes(now=now)
