"""Object storage's samples into the usage ledger: storage measures every live bucket each
OBJECT_STORAGE_SAMPLE_SECONDS (apps/storage/objects/usage.py) and announces the sizes (buckets_sampled);
billing writes the rows (connected in BillingConfig.ready).

Each run bills the sample window that ended last, [end - interval, end), at the size measured now:
quantity_seconds is the window (cut at the bucket's creation), and the unit price per hour is the started GiB
stored times OBJECT_STORAGE_PRICE_PER_GIB_HOUR. Billing per started GiB keeps the price exact at the ledger's
4 places and gives an invoice one line per size rather than one per byte count. The row id is deterministic
(bucket, meter, window start), so running again in the same window writes nothing; a window no run sampled
(the worker was down) is not billed, since its size is unknown. Each row carries the bucket's tags as they
are when it is written. A run's rows go in with one statement, however many buckets were sampled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from apps.billing.metering import LedgerRow, insert_rows, tags_json
from apps.billing.models import AMOUNT_PLACES, LedgerKind, UsageRecord
from apps.storage.objects.models import Bucket
from apps.storage.objects.usage import Sample

METER = "object_storage_gib_hours"
GIB = 1024**3
PRICE_PLACES = Decimal("0.0001")


def price_per_gib_hour() -> Decimal:
    price = Decimal(settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR)
    if price < 0 or price != price.quantize(PRICE_PLACES):
        raise ImproperlyConfigured("OBJECT_STORAGE_PRICE_PER_GIB_HOUR must be >= 0 with at most 4 decimals.")
    return price


def billed_gib(size_bytes: int) -> int:
    return math.ceil(size_bytes / GIB)


def window_ending_before(now: datetime, interval: int) -> tuple[datetime, datetime]:
    end_epoch = int(now.timestamp()) // interval * interval
    end = datetime.fromtimestamp(end_epoch, tz=UTC)
    return end - timedelta(seconds=interval), end


def record_id(bucket: Bucket, start: datetime) -> str:
    return f"bucket:{bucket.pk}:{METER}:{int(start.timestamp())}"


def usage_row(bucket: Bucket, size_bytes: int, start: datetime, end: datetime) -> UsageRecord | None:
    """The ledger row for one bucket and window, or None when there is nothing to bill."""
    begin = max(start, bucket.created_at)
    seconds = int((end - begin).total_seconds())
    unit_price = billed_gib(size_bytes) * price_per_gib_hour()
    if seconds <= 0 or unit_price <= 0:
        return None
    amount = (unit_price * seconds / Decimal(3600)).quantize(AMOUNT_PLACES, rounding=ROUND_HALF_UP)
    return UsageRecord(
        id=record_id(bucket, start),
        tenant_id=bucket.tenant_id,
        resource_type="bucket",
        resource_id=str(bucket.pk),
        meter=METER,
        period=DateTimeTZRange(begin, end, "[)"),
        quantity_seconds=seconds,
        unit_price_per_hour=unit_price,
        amount=amount,
        kind=LedgerKind.USAGE,
        tags=dict(bucket.tags or {}),
    )


def write_samples(samples: Iterable[Sample], *, now: datetime) -> int:
    """The ledger rows of one sampling run; returns how many were new."""
    start, end = window_ending_before(now, settings.OBJECT_STORAGE_SAMPLE_SECONDS)
    rows = [row for s in samples if (row := usage_row(s.bucket, s.size_bytes, start, end)) is not None]
    # One statement for the whole run, ON CONFLICT DO NOTHING: a window sampled before keeps its first row.
    return insert_rows(
        [
            LedgerRow(
                id=row.id,
                tenant_id=row.tenant_id,
                resource_type=row.resource_type,
                resource_id=row.resource_id,
                meter=row.meter,
                start=row.period.lower,
                end=row.period.upper,
                seconds=row.quantity_seconds,
                price_per_hour=row.unit_price_per_hour,
                amount=row.amount,
                tags_json=tags_json(row.tags),
            )
            for row in rows
        ]
    )


def meter_sampled_buckets(sender: Any, *, samples: list[Sample], now: datetime, **kwargs: Any) -> int:
    """apps.storage.objects.signals.buckets_sampled"""
    return write_samples(samples, now=now)
