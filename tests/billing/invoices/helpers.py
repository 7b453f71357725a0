"""Ledger rows and invoices for the invoice tests (and the isolation harness's `invoice_id` factory)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from apps.billing.invoices import periods, services
from apps.billing.invoices.models import Invoice
from apps.billing.metering import amount_for
from apps.billing.models import UsageRecord

OCTOBER = date(2026, 10, 1)


def at(day: int, hour: int = 0, minute: int = 0, month: date = OCTOBER) -> datetime:
    return datetime(month.year, month.month, day, hour, minute, tzinfo=UTC)


def write_usage(
    tenant: Any,
    *,
    instance_type: str,
    start: datetime,
    seconds: int,
    price: str,
    resource_id: str | None = None,
    window: int = 3600,
    created_at: datetime | None = None,
) -> list[UsageRecord]:
    """Rows of one instance running from `start` for `seconds`, cut into windows like the metering task
    (every window starts on a minute boundary when `start` does), each rated at `price` per hour; written
    now or at `created_at`."""
    resource_id = resource_id or str(uuid.uuid4())
    meter = f"instance_seconds:{instance_type}"
    rows = []
    offset = 0
    while offset < seconds:
        piece = min(window, seconds - offset)
        lower = start + timedelta(seconds=offset)
        rows.append(
            UsageRecord(
                id=f"instance:{resource_id}:{meter}:{int(lower.timestamp())}",
                tenant=tenant,
                resource_type="instance",
                resource_id=resource_id,
                meter=meter,
                period=DateTimeTZRange(lower, lower + timedelta(seconds=piece), "[)"),
                quantity_seconds=piece,
                unit_price_per_hour=Decimal(price),
                amount=amount_for(piece, Decimal(price)),
                **({"created_at": created_at} if created_at else {}),
            )
        )
        offset += piece
    return UsageRecord.objects.bulk_create(rows)


def make_invoice(tenant: Any, month: date | None = None) -> Invoice:
    """A finalized invoice with one line, for a past month the tenant has no invoice for yet."""
    if month is None:
        earliest = Invoice.objects.filter(tenant=tenant).order_by("month").values_list("month", flat=True)
        month = periods.previous_month(earliest[0]) if earliest else OCTOBER
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2, month=month), seconds=5400, price="2.4900")
    return services.invoice_close(tenant=tenant, month=month)


EXAMPLE_NUMBER = "GPC-2026-10-000042"


def example_invoice() -> Invoice:
    """The example bill of docs/billing.md: October 2026 for "Acme AI", two instance types, a price change
    of the H100 on the 15th, and 25.00 of promotional credit granted on 1 October."""
    from apps.billing.models import CreditGrant
    from tests.factories import TenantFactory

    tenant = TenantFactory(name="Acme AI", slug="acme", credit=0)
    CreditGrant.objects.create(
        tenant=tenant,
        kind="promotional",
        amount=Decimal("25.00"),
        reason="welcome credit",
        created_at=at(1),
        expires_at=at(1, month=date(2027, 1, 1)),
    )
    # gpu-h100x1: 61 h 7 min 13 s at 2.49 until the 15th, then 40 h 0 min 45 s at 2.29.
    write_usage(tenant, instance_type="gpu-h100x1", start=at(6, 9), seconds=219_600, price="2.4900")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(13, 14), seconds=433, price="2.4900")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(20, 8), seconds=144_045, price="2.2900")
    # gpu-a100x1: 7 h 30 min 9 s at 1.29 on two instances.
    write_usage(tenant, instance_type="gpu-a100x1", start=at(8, 10), seconds=18_000, price="1.2900")
    write_usage(tenant, instance_type="gpu-a100x1", start=at(9, 10), seconds=9_009, price="1.2900")
    # cpu-4x: 12 h 0 min 0 s at 0.12.
    write_usage(tenant, instance_type="cpu-4x", start=at(2), seconds=43_200, price="0.1200")
    return services.invoice_close(tenant=tenant, month=OCTOBER)
