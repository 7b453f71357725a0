"""Writing the usage ledger from instances' timelines. Idempotent: run it any number of times, from any
process, after any crash; each final piece of billed time is written exactly once.

A pass works on chunks of resources (BILLING_METERING_CHUNK) in a constant number of queries per chunk,
however many resources it holds and however long they have run: where each one's ledger ends (one index
probe each), the billing lines from there on, the price versions, and one INSERT of every new row. Rows
are cut where billing stops, the price changes, the UTC month ends and at each checkpoint (intervals.py),
so an always-on instance adds one row an hour (docs/billing.md "Metering")."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import CharField, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from apps.billing import intervals
from apps.billing.models import AMOUNT_PLACES, LedgerKind, PriceVersion, UsageRecord
from apps.instances.models import Instance, InstanceEvent

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# The timeline lines that start and stop billing (services._event); copies of Kubernetes Events never do.
BILLING_EVENT_KINDS = ("action", "observation")
INSTANCE_METER_PREFIX = "instance_seconds:"


def checkpoint() -> timedelta:
    """BILLING_CHECKPOINT_SECONDS, refused unless it divides an hour: rows must never cross an hour, which
    the Stripe export and the usage reports group by."""
    seconds = int(settings.BILLING_CHECKPOINT_SECONDS)
    if seconds <= 0 or 3600 % seconds:
        raise ImproperlyConfigured("BILLING_CHECKPOINT_SECONDS must be a divisor of 3600.")
    return timedelta(seconds=seconds)


def meter_key(instance: Instance) -> str:
    return f"{INSTANCE_METER_PREFIX}{instance.instance_type.slug}"


def amount_for(seconds: int, price_per_hour: Decimal) -> Decimal:
    return (price_per_hour * Decimal(seconds) / Decimal(3600)).quantize(AMOUNT_PLACES, rounding=ROUND_HALF_UP)


def with_launch_price(
    versions: Sequence[tuple[datetime, Decimal]], launch_price: Decimal
) -> list[tuple[datetime, Decimal]]:
    """The price versions of a type, sorted; before any recorded version, the price the instance was launched
    at."""
    prices = sorted(versions)
    if not prices or prices[0][0] > EARLIEST:
        prices.insert(0, (EARLIEST, launch_price))
    return prices


def price_versions(type_ids: Collection[Any]) -> dict[Any, list[tuple[datetime, Decimal]]]:
    """The price versions of the instance types, by type id: one query."""
    found: dict[Any, list[tuple[datetime, Decimal]]] = {}
    for type_id, effective_from, price in PriceVersion.objects.filter(
        instance_type_id__in=type_ids
    ).values_list("instance_type_id", "effective_from", "price_per_hour"):
        found.setdefault(type_id, []).append((effective_from, price))
    return found


def prices_for(instance: Instance) -> list[tuple[datetime, Decimal]]:
    return with_launch_price(
        price_versions([instance.instance_type_id]).get(instance.instance_type_id, []),
        instance.price_per_hour,
    )


def transitions_of(instance: Instance) -> list[intervals.Transition]:
    """The instance's whole timeline of billing flags in the order they were written (id): what a full
    recomputation reads (a pass reads only the lines from where the ledger ends: billing_lines)."""
    rows = (
        InstanceEvent.objects.filter(instance=instance, kind__in=BILLING_EVENT_KINDS)
        .order_by("id")
        .values_list("created_at", "billable")
    )
    return [intervals.Transition(at, billable) for at, billable in rows]


# The keys and rows travel as one JSON document each: one string to bind, where arrays of thousands of
# values are quoted element by element by the driver (most of a pass's time at 5,000 instances).
_LEDGER_ENDS = """
SELECT k.resource_id, k.meter, e.period_end
FROM jsonb_to_recordset(%s::jsonb) AS k(resource_id text, meter text)
CROSS JOIN LATERAL (
    SELECT upper(u.period) AS period_end FROM {ledger} u
    WHERE u.resource_id = k.resource_id AND u.meter = k.meter AND u.kind = 'usage'
    ORDER BY upper(u.period) DESC
    LIMIT 1
) e
"""


def ledger_ends(keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """Where the usage rows of each (resource id, meter) end: one query, one probe of
    usage_resource_meter_end_idx per key. Metering writes a resource's new rows in one statement and never
    changes them, so its ledger holds every final piece before this moment and none after."""
    if not keys:
        return {}
    document = json.dumps([{"resource_id": resource_id, "meter": meter} for resource_id, meter in keys])
    with connection.cursor() as cursor:
        cursor.execute(_LEDGER_ENDS.format(ledger=UsageRecord._meta.db_table), [document])
        return {(resource_id, meter): end for resource_id, meter, end in cursor.fetchall()}


# Per instance: the billing line in force at `since` (the last one dated at or before it; services date
# billing lines in the order they write them) and every later one in written order; the whole timeline when
# the ledger is empty. instance_event_time_idx serves both as ranges of (instance, created_at).
_BILLING_LINES = """
SELECT k.instance_id::text, e.created_at, e.billable, e.in_force
FROM jsonb_to_recordset(%s::jsonb) AS k(instance_id uuid, since timestamptz)
CROSS JOIN LATERAL (
    (SELECT ev.created_at, ev.billable, true AS in_force, ev.id FROM {events} ev
     WHERE ev.instance_id = k.instance_id AND ev.kind = ANY(%s) AND ev.created_at <= k.since
     ORDER BY ev.created_at DESC, ev.id DESC
     LIMIT 1)
    UNION ALL
    (SELECT ev.created_at, ev.billable, false, ev.id FROM {events} ev
     WHERE ev.instance_id = k.instance_id AND ev.kind = ANY(%s)
       AND ev.created_at > coalesce(k.since, '-infinity'::timestamptz))
) e
ORDER BY k.instance_id, e.in_force DESC, e.id
"""


def billing_lines(since: dict[str, datetime | None]) -> dict[str, list[intervals.Transition]]:
    """The billing transitions of each instance (by id as text) from `since` (where its ledger ends; None:
    the beginning): the line in force then, as a line at `since`, and the lines after it. One query for any
    number of instances, two index ranges each, however long their timelines."""
    if not since:
        return {}
    document = json.dumps([{"instance_id": key, "since": _iso(at)} for key, at in since.items()])
    kinds = list(BILLING_EVENT_KINDS)
    found: dict[str, list[intervals.Transition]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_BILLING_LINES.format(events=InstanceEvent._meta.db_table), [document, kinds, kinds])
        for instance_id, at, billable, in_force in cursor.fetchall():
            start = since[instance_id]
            # The line in force stands at `since` (there is one only when `since` is set).
            moment = start if in_force and start is not None else at
            found.setdefault(instance_id, []).append(intervals.Transition(moment, billable))
    return found


@dataclass(frozen=True)
class Metered:
    """One resource on one meter as a pass reads it: whose, and its tags at metering time (as JSON text: a
    pass hands them from the resource's row to the ledger's without decoding them)."""

    resource_type: str
    resource_id: str
    meter: str
    tenant_id: Any
    tags_json: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.resource_id, self.meter)


@dataclass(frozen=True)
class LedgerRow:
    """A usage row to append (UsageRecord's columns)."""

    id: str
    tenant_id: Any
    resource_type: str
    resource_id: str
    meter: str
    start: datetime
    end: datetime
    seconds: int
    price_per_hour: Decimal
    amount: Decimal
    tags_json: str


def tags_json(tags: dict[str, str] | None) -> str:
    return json.dumps(tags or {}, sort_keys=True)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def usage_id(resource_type: str, resource_id: str, meter: str, start: datetime) -> str:
    """Deterministic: writing the same piece twice is a no-op (the primary key refuses the second)."""
    return f"{resource_type}:{resource_id}:{meter}:{int(start.timestamp())}"


def record_id(instance: Instance, meter: str, start: datetime) -> str:
    return usage_id("instance", str(instance.pk), meter, start)


def rows_for(resource: Metered, pieces: Iterable[intervals.Piece]) -> list[LedgerRow]:
    return [
        LedgerRow(
            id=usage_id(resource.resource_type, resource.resource_id, resource.meter, piece.start),
            tenant_id=resource.tenant_id,
            resource_type=resource.resource_type,
            resource_id=resource.resource_id,
            meter=resource.meter,
            start=piece.start,
            end=piece.end,
            seconds=piece.seconds,
            price_per_hour=piece.price_per_hour,
            amount=amount_for(piece.seconds, piece.price_per_hour),
            tags_json=resource.tags_json,
        )
        for piece in pieces
    ]


_INSERT = """
WITH written AS (
    INSERT INTO {ledger} (id, tenant_id, resource_type, resource_id, meter, period, quantity_seconds,
                          unit_price_per_hour, amount, kind, tags, created_at)
    SELECT r->>0, (r->>1)::uuid, r->>2, r->>3, r->>4,
           tstzrange(to_timestamp((r->>5)::bigint), to_timestamp((r->>6)::bigint), '[)'),
           (r->>7)::bigint, (r->>8)::numeric, (r->>9)::numeric, %s, (r->>10)::jsonb, %s
    FROM jsonb_array_elements(%s::jsonb) AS document(r)
    -- One order for every writer: two passes inserting the same rows wait for each other in that order.
    ORDER BY r->>0
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM written
"""


def insert_rows(rows: Sequence[LedgerRow]) -> int:
    """Append the rows in one statement (so each resource's new rows land together) and return how many
    were new. ON CONFLICT DO NOTHING: a row written before (same id) or overlapping one (the exclusion
    constraint) is kept as it is, so a pass that runs twice, or beside another, writes each piece once."""
    if not rows:
        return 0
    # A row a JSON array, in the columns' order: times in epoch seconds (every piece is whole seconds),
    # decimals as text (exact, never through a float), tags as the JSON text read from the resource.
    document = json.dumps(
        [
            [
                row.id,
                str(row.tenant_id),
                row.resource_type,
                row.resource_id,
                row.meter,
                int(row.start.timestamp()),
                int(row.end.timestamp()),
                row.seconds,
                str(row.price_per_hour),
                str(row.amount),
                row.tags_json,
            ]
            for row in rows
        ]
    )
    with connection.cursor() as cursor:
        # created_at is the wall clock of the write, as wallet snapshots expect (models.WalletSnapshot).
        cursor.execute(
            _INSERT.format(ledger=UsageRecord._meta.db_table), [LedgerKind.USAGE, timezone.now(), document]
        )
        (written,) = cursor.fetchone() or (0,)
    return int(written)


@dataclass(frozen=True)
class BilledInstance:
    """What a pass needs of an instance (read for a whole chunk at once)."""

    metered: Metered
    instance_type_id: Any
    launch_price: Decimal


def billed_instance(
    *, pk: Any, tenant_id: Any, instance_type_id: Any, slug: str, price: Decimal, tags: str
) -> BilledInstance:
    """`tags`: the instance's tags as JSON text."""
    meter = f"{INSTANCE_METER_PREFIX}{slug}"
    return BilledInstance(Metered("instance", str(pk), meter, tenant_id, tags), instance_type_id, price)


def meter_instances(chunk: Sequence[BilledInstance], *, now: datetime) -> int:
    """Write the chunk's final, not yet written pieces of billed time, each instance from where its ledger
    ends, in four queries whatever the chunk's size and the instances' age. Returns how many rows were new."""
    if not chunk:
        return 0
    ends = ledger_ends([i.metered.key for i in chunk])
    lines = billing_lines({i.metered.resource_id: ends.get(i.metered.key) for i in chunk})
    versions = price_versions({i.instance_type_id for i in chunk})
    step = checkpoint()
    rows: list[LedgerRow] = []
    for instance in chunk:
        found = intervals.pieces(
            intervals.billed_intervals(lines.get(instance.metered.resource_id, [])),
            checkpoint=step,
            prices=with_launch_price(versions.get(instance.instance_type_id, []), instance.launch_price),
            now=now,
        )
        rows += rows_for(instance.metered, found)
    return insert_rows(rows)


def meter_instance(instance: Instance, *, now: datetime | None = None) -> int:
    """One instance (the task queued when its billing stops): a chunk of one. Returns how many rows were
    new."""
    one = billed_instance(
        pk=instance.pk,
        tenant_id=instance.tenant_id,
        instance_type_id=instance.instance_type_id,
        slug=instance.instance_type.slug,
        price=instance.price_per_hour,
        tags=tags_json(instance.tags),
    )
    return meter_instances([one], now=now or timezone.now())


def _text(field: type[CharField] | type[TextField], column: str) -> Cast:
    return Cast(column, output_field=field())


def chunks(items: Sequence[Any], size: int | None = None) -> Iterable[Sequence[Any]]:
    size = max(1, size or settings.BILLING_METERING_CHUNK)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def meter_all(*, now: datetime | None = None) -> int:
    """The periodic task: meter billed instances, and any that changed within the catch-up horizon (so an
    outage of the worker shorter than that loses nothing), chunk by chunk; then volumes
    (volume_metering.py). Returns how many rows were new."""
    now = now or timezone.now()
    horizon = now - timedelta(hours=settings.BILLING_CATCH_UP_HOURS)
    rows = (
        Instance.objects.filter(Q(billing_since__isnull=False) | Q(updated_at__gte=horizon))
        .order_by("pk")
        # Ids and tags as text: they go from this row to the ledger's as they are, undecoded.
        .annotate(
            key=_text(CharField, "pk"),
            tenant_text=_text(CharField, "tenant_id"),
            tags_text=_text(TextField, "tags"),
        )
        .values_list(
            "key", "tenant_text", "instance_type_id", "instance_type__slug", "price_per_hour", "tags_text"
        )
    )
    candidates = [
        billed_instance(
            pk=pk, tenant_id=tenant_id, instance_type_id=type_id, slug=slug, price=price, tags=tags
        )
        for pk, tenant_id, type_id, slug, price, tags in rows
    ]
    written = sum(meter_instances(chunk, now=now) for chunk in chunks(candidates))
    from apps.billing.volume_metering import (
        meter_volumes,  # volumes are billed like instance time (it imports this)
    )

    return written + meter_volumes(now=now)
