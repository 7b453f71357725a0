"""Sampling the bytes each bucket stores (the beat task runs it every OBJECT_STORAGE_SAMPLE_SECONDS): the
figures are kept on the bucket's row (the quota's measure, the API's size) and announced with
buckets_sampled, on which billing writes the usage ledger (apps/billing/bucket_metering.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from apps.storage.objects import s3
from apps.storage.objects.models import Bucket
from apps.storage.objects.signals import buckets_sampled
from apps.tenants.models import TenantStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    bucket: Bucket
    size_bytes: int


def sample_bucket(bucket: Bucket, *, now: datetime) -> Sample:
    """Measure one bucket and remember the figures on its row."""
    size, count = s3.bucket_usage(bucket.physical_name)
    bucket.size_bytes, bucket.object_count, bucket.usage_sampled_at = size, count, now
    bucket.save(update_fields=["size_bytes", "object_count", "usage_sampled_at"])
    return Sample(bucket, size)


def sample_buckets(*, now: datetime | None = None) -> int:
    """Sample every live bucket of a tenant that is not closed and announce the samples; returns how many
    ledger rows the receivers (billing) wrote new."""
    if not s3.configured():
        return 0
    now = now or timezone.now()
    samples = []
    # A closed tenant's buckets are no longer billed while they are retained (apps/storage/closing.py).
    live = Bucket.objects.filter(deleted_at__isnull=True).exclude(tenant__status=TenantStatus.CLOSED)
    for bucket in live.order_by("pk"):
        try:
            samples.append(sample_bucket(bucket, now=now))
        except s3.NoSuchBucket:
            logger.warning("bucket %s is missing on the storage service", bucket.physical_name)
            continue
        except s3.Unavailable:
            logger.warning("object storage unavailable; usage sampling stopped for this run")
            break
    if not samples:
        return 0
    results = buckets_sampled.send(sender=Bucket, samples=samples, now=now)
    written: list[Any] = [result for _receiver, result in results]
    return sum(result for result in written if isinstance(result, int))
