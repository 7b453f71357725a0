"""Usage sampling into the ledger: bytes measured on the real SeaweedFS, rows with exact Decimal amounts,
idempotent per window; the arithmetic of a row is also checked on its own with sizes too large to upload."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from apps.billing import bucket_metering
from apps.billing.invoices.services import draft_lines
from apps.billing.models import UsageRecord
from apps.storage.objects import usage
from apps.storage.objects.models import Bucket
from tests.conftest import Actor
from tests.storage.objects.helpers import bucket_row

GIB = 1024**3


def make_bucket(actor: Actor, name: str) -> Bucket:
    response = actor.token_client().post(actor.url("/buckets"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Bucket.objects.get(pk=response.json()["id"])


@pytest.mark.usefixtures("object_storage")
def test_sampling_writes_one_row_per_bucket_and_window(
    make_actor: Callable[..., Actor], admin_s3: Any, settings: Any
) -> None:
    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.3600")
    settings.OBJECT_STORAGE_SAMPLE_SECONDS = 600
    a, b = make_actor(), make_actor()
    full, empty = make_bucket(a, "datasets"), make_bucket(a, "empty")
    other = make_bucket(b, "datasets")
    admin_s3.put_object(Bucket=full.physical_name, Key="a", Body=b"x" * 1000)
    admin_s3.put_object(Bucket=full.physical_name, Key="b/c", Body=b"y" * 24)
    admin_s3.put_object(Bucket=other.physical_name, Key="a", Body=b"z")
    # One minute into a window that starts at least 20 minutes after the creation, so the window that ended
    # last lies after it and "30 s later" stays in the same window whatever the clock says.
    _, boundary = bucket_metering.window_ending_before(full.created_at + timedelta(minutes=30), 600)
    later = boundary + timedelta(minutes=1)

    assert usage.sample_buckets(now=later) == 2  # the empty bucket costs nothing and writes nothing
    start, end = bucket_metering.window_ending_before(later, 600)
    row = UsageRecord.objects.get(resource_id=str(full.pk))
    assert row.id == f"bucket:{full.pk}:object_storage_gib_hours:{int(start.timestamp())}"
    assert (row.tenant_id, row.resource_type, row.meter) == (
        a.tenant.pk,
        "bucket",
        "object_storage_gib_hours",
    )
    assert row.period == DateTimeTZRange(start, end, "[)")
    assert row.quantity_seconds == 600
    assert row.unit_price_per_hour == Decimal("0.3600")  # 1 started GiB
    assert row.amount == Decimal("0.060000")  # 0.36 per hour for 10 minutes
    assert UsageRecord.objects.get(resource_id=str(other.pk)).tenant_id == b.tenant.pk
    assert not UsageRecord.objects.filter(resource_id=str(empty.pk)).exists()

    listed = a.token_client().get(a.url("/buckets")).json()["results"]
    assert {x["name"]: (x["size_bytes"], x["object_count"]) for x in listed} == {
        "datasets": (1024, 2),
        "empty": (0, 0),
    }
    assert all(x["usage_sampled_at"] for x in listed)

    # Again in the same window: nothing new. The next window: one row more per non-empty bucket.
    assert usage.sample_buckets(now=later + timedelta(seconds=30)) == 0
    assert usage.sample_buckets(now=later + timedelta(minutes=10)) == 2
    assert UsageRecord.objects.filter(resource_id=str(full.pk)).count() == 2

    line = next(
        x
        for x in draft_lines(tenant=a.tenant, month=start.date().replace(day=1))
        if x.meter == bucket_metering.METER
    )
    assert line.description == "Object storage hours (per started GiB)"


@pytest.mark.django_db
def test_a_row_bills_started_gib_and_is_cut_at_creation(owner: Actor, settings: Any) -> None:
    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.0001")
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    end = start + timedelta(minutes=10)
    bucket = bucket_row(owner.tenant, created_at=start - timedelta(days=1))

    row = bucket_metering.usage_row(bucket, 3 * GIB + 1, start, end)
    assert row is not None
    assert (row.unit_price_per_hour, row.quantity_seconds, row.amount) == (
        Decimal("0.0004"),
        600,
        Decimal("0.000067"),
    )
    assert bucket_metering.usage_row(bucket, 0, start, end) is None

    bucket.created_at = start + timedelta(minutes=4)
    cut = bucket_metering.usage_row(bucket, GIB, start, end)
    assert cut is not None and cut.quantity_seconds == 360 and cut.period.lower == bucket.created_at
    bucket.created_at = end
    assert bucket_metering.usage_row(bucket, GIB, start, end) is None


def test_windows_are_aligned() -> None:
    now = datetime(2026, 3, 1, 12, 7, 31, tzinfo=UTC)
    assert bucket_metering.window_ending_before(now, 600) == (
        datetime(2026, 3, 1, 11, 50, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )


def test_a_price_with_more_than_four_places_is_refused(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.00003")
    with pytest.raises(ImproperlyConfigured):
        bucket_metering.price_per_gib_hour()
