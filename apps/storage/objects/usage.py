"""Sampling bytes stored into the usage ledger (the beat task runs it every OBJECT_STORAGE_SAMPLE_SECONDS).

Each run measures every live bucket and bills the sample window that ended last, [end - interval, end),
at the size measured now: quantity_seconds is the window (cut at the bucket's creation), and the unit price
per hour is the started GiB stored times OBJECT_STORAGE_PRICE_PER_GIB_HOUR. Billing per started GiB keeps
the price exact at the ledger's 4 places and gives an invoice one line per size rather than one per byte
count. The row id is deterministic (bucket, meter, window start), so running again in the same window
writes nothing; a window no run sampled (the worker was down) is not billed, since its size is unknown.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.billing.models import AMOUNT_PLACES, LedgerKind, UsageRecord
from apps.storage.objects import s3
from apps.storage.objects.models import Bucket
from apps.tenants.models import TenantStatus

logger = logging.getLogger(__name__)

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
    )


def sample_bucket(bucket: Bucket, *, now: datetime) -> UsageRecord | None:
    """Measure one bucket, remember the figures on its row and return its ledger row (not yet written)."""
    size, count = s3.bucket_usage(bucket.physical_name)
    bucket.size_bytes, bucket.object_count, bucket.usage_sampled_at = size, count, now
    bucket.save(update_fields=["size_bytes", "object_count", "usage_sampled_at"])
    start, end = window_ending_before(now, settings.OBJECT_STORAGE_SAMPLE_SECONDS)
    return usage_row(bucket, size, start, end)


def sample_buckets(*, now: datetime | None = None) -> int:
    """Sample every live bucket of a tenant that is not closed; returns how many ledger rows were new."""
    if not s3.configured():
        return 0
    now = now or timezone.now()
    rows = []
    # A closed tenant's buckets are no longer billed while they are retained (apps/storage/closing.py).
    live = Bucket.objects.filter(deleted_at__isnull=True).exclude(tenant__status=TenantStatus.CLOSED)
    for bucket in live.order_by("pk"):
        try:
            row = sample_bucket(bucket, now=now)
        except s3.NoSuchBucket:
            logger.warning("bucket %s is missing on the storage service", bucket.physical_name)
            continue
        except s3.Unavailable:
            logger.warning("object storage unavailable; usage sampling stopped for this run")
            break
        if row is not None:
            rows.append(row)
    if not rows:
        return 0
    ids = [row.id for row in rows]
    before = UsageRecord.objects.filter(id__in=ids).count()
    # ON CONFLICT DO NOTHING: a window sampled before keeps its first row.
    UsageRecord.objects.bulk_create(rows, ignore_conflicts=True)
    return UsageRecord.objects.filter(id__in=ids).count() - before
