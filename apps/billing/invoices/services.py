"""Closing a billing period: one invoice per tenant and month, built from the ledger and finalized.

The work is set-based (closing.py, aggregation.py): one aggregation of the month's rows, chunks of tenants
per transaction, credits carried on from the previous close's wallet snapshot, adjustments for rows that
arrived after their month was invoiced. Idempotent: closing a month again returns the finalized invoices
untouched (closes run one at a time, and a unique constraint on tenant and month backs this); a draft left
by an interrupted close is rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.billing.cluster_usage import NodeRef
from apps.billing.invoices import aggregation, closing, periods
from apps.billing.invoices.closing import CloseResult
from apps.billing.invoices.models import CENTS, Invoice
from apps.core.errors import InvalidInput
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

INSTANCE_METER_PREFIX = "instance_seconds:"
VOLUME_METER_PREFIX = "volume_gib_hours:"  # apps/billing/volume_metering.py
OBJECT_STORAGE_METER = "object_storage_gib_hours"  # apps/billing/bucket_metering.py


@dataclass(frozen=True)
class LineDraft:
    meter: str
    description: str
    quantity_seconds: int
    unit_price_per_hour: Decimal
    amount: Decimal
    exact_amount: Decimal
    node: NodeRef | None = None  # a node's line, grouped under its cluster


def line_amount(seconds: int, price_per_hour: Decimal) -> Decimal:
    """The one rounding of a bill: exact seconds times the hourly price, to cents, half up. The close does
    the same in SQL (aggregation.py); tests hold the two equal."""
    return (Decimal(seconds) * price_per_hour / Decimal(3600)).quantize(CENTS, rounding=ROUND_HALF_UP)


def draft_lines(*, tenant: Any, month: date) -> list[LineDraft]:
    """The month's lines of the tenant as the close would write them, without writing (adjustments and
    credit lines aside): the same two statements' SQL, in one query."""
    start, end = periods.bounds(month)
    params = {
        **aggregation.stage_one_params(
            start=start,
            end=end,
            settled=end,
            thresholds={},
            nodes=aggregation.node_keys([tenant.pk]),
            tenants=[tenant.pk],
        ),
        **aggregation.lines_params(
            month=month, chunk=[tenant.pk], earliest=periods.next_month(month), late=[]
        ),
    }
    sql = aggregation.lines_sql(source=f"({aggregation.stage_one(temp_table=None, tenants=True)}) s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM ({sql}) d ORDER BY position", params)  # noqa: S608 (table names from the models)
        names = [c.name for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return [
        LineDraft(
            meter=row["meter"],
            description=row["description"],
            quantity_seconds=int(row["seconds"]),
            unit_price_per_hour=row["price"],
            amount=row["amount"],
            exact_amount=row["exact"],
            node=NodeRef(row["cluster_id"], row["cluster_name"], row["rank"])
            if row["cluster_id"] is not None
            else None,
        )
        for row in rows
    ]


def _check_ended(month: date, now: datetime) -> None:
    if periods.bounds(month)[1] > now:
        raise InvalidInput(
            f"{month:%Y-%m} has not ended yet; a month is closed after its last second.",
            fields={"month": ["The month has not ended yet."]},
        )


def invoice_close(*, tenant: Tenant, month: date, now: datetime | None = None) -> Invoice:
    """Build and finalize the tenant's invoice for the month (even at zero); the existing one if already
    finalized. Raises what failed."""
    now = now or timezone.now()
    _check_ended(month, now)
    result = closing.close_month(month=month, now=now, tenant_ids=[tenant.pk], retry=False)
    (invoice,) = result.invoices
    return invoice


def month_close(
    *, month: date, tenant: Tenant | None = None, now: datetime | None = None, chunk_size: int = closing.CHUNK
) -> CloseResult:
    """Close the month for one tenant (even without usage: an invoice of zero) or for every tenant with
    usage in it or rows arrived late for an earlier closed month, `chunk_size` tenants per transaction. A
    chunk that fails is retried tenant by tenant; the tenants that still fail are in `failed` (the others
    are invoiced), and closing again picks them up."""
    now = now or timezone.now()
    _check_ended(month, now)
    result = closing.close_month(
        month=month, now=now, tenant_ids=[tenant.pk] if tenant is not None else None, chunk_size=chunk_size
    )
    for tenant_id, error in result.failed.items():
        logger.error("billing close %s: tenant %s not invoiced: %s", f"{month:%Y-%m}", tenant_id, error)
    return result


def period_close(*, month: date, tenant: Tenant | None = None, now: datetime | None = None) -> list[Invoice]:
    """month_close's invoices, in tenant order."""
    return month_close(month=month, tenant=tenant, now=now).invoices
