"""Closing a billing period: one invoice per tenant and month, built from the ledger and finalized.

Idempotent: closing a month again returns the finalized invoice untouched (a unique constraint on tenant and
month backs this against concurrent closes); a draft left by an interrupted close is rebuilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Min, Q, Sum
from django.db.models.functions import Lower
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing import cluster_usage
from apps.billing.cluster_usage import NodeRef
from apps.billing.invoices import periods
from apps.billing.invoices.credits import credits_for_month
from apps.billing.invoices.models import (
    CENTS,
    NUMBER_PREFIX,
    NUMBER_SEQUENCE,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)
from apps.billing.models import UsageRecord
from apps.catalog.models import InstanceType
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
    """The one rounding of a bill: exact seconds times the hourly price, to cents, half up."""
    return (Decimal(seconds) * price_per_hour / Decimal(3600)).quantize(CENTS, rounding=ROUND_HALF_UP)


def month_usage(*, tenant: Any, month: date) -> Any:
    """Ledger rows of the tenant whose period starts in the month (pieces never cross a minute boundary,
    so they never cross a month boundary either)."""
    start, end = periods.bounds(month)
    return (
        UsageRecord.objects.filter(tenant=tenant)
        .annotate(started=Lower("period"))
        .filter(started__gte=start, started__lt=end)
    )


def _describe(meter: str, types: dict[str, InstanceType]) -> str:
    if meter.startswith(INSTANCE_METER_PREFIX):
        slug = meter.removeprefix(INSTANCE_METER_PREFIX)
        itype = types.get(slug)
        name = getattr(itype, "name", "") if itype is not None else ""
        return f"{slug} ({name}) instance hours" if name and name != slug else f"{slug} instance hours"
    if meter.startswith(VOLUME_METER_PREFIX):
        # One line per size: the unit price is size x the price per GiB-hour.
        return f"Volume storage hours ({meter.removeprefix(VOLUME_METER_PREFIX)} class)"
    if meter == OBJECT_STORAGE_METER:
        # One line per size too: the unit price is the started GiB stored x the price per GiB-hour.
        return "Object storage hours (per started GiB)"
    return meter


def draft_lines(*, tenant: Any, month: date) -> list[LineDraft]:
    """One line per meter and unit price: a price change within the month gives the meter two lines. A
    node of a cluster has lines of its own (per meter and unit price), after the others, grouped per cluster
    (by name) and ordered by rank. A constant number of queries, however many rows, nodes and clusters."""
    usage = month_usage(tenant=tenant, month=month)
    nodes = Q(resource_type="instance", resource_id__in=cluster_usage.node_keys(tenant=tenant))
    groups = [
        g
        for g in usage.exclude(nodes)
        .values("meter", "unit_price_per_hour")
        .annotate(seconds=Sum("quantity_seconds"), exact=Sum("amount"), first=Min("started"))
        .order_by("meter", "first", "unit_price_per_hour")
        if g["seconds"]  # fully reversed usage leaves nothing to bill
    ]
    node_groups = [
        g
        for g in usage.filter(nodes)
        .values("resource_id", "meter", "unit_price_per_hour")
        .annotate(seconds=Sum("quantity_seconds"), exact=Sum("amount"), first=Min("started"))
        .order_by("resource_id", "meter", "first", "unit_price_per_hour")
        if g["seconds"]
    ]
    refs = cluster_usage.nodes_by_resource(
        tenant=tenant, resource_ids={g["resource_id"] for g in node_groups}
    )
    slugs = {g["meter"].removeprefix(INSTANCE_METER_PREFIX) for g in [*groups, *node_groups]}
    types = {t.slug: t for t in InstanceType.objects.filter(slug__in=slugs)}

    def draft(g: dict[str, Any], node: NodeRef | None) -> LineDraft:
        description = _describe(g["meter"], types)
        if node is not None:
            description = f"{description}, cluster {node.cluster_name} node {node.rank}"
        return LineDraft(
            meter=g["meter"],
            description=description,
            quantity_seconds=g["seconds"],
            unit_price_per_hour=g["unit_price_per_hour"],
            amount=line_amount(g["seconds"], g["unit_price_per_hour"]),
            exact_amount=g["exact"],
            node=node,
        )

    # The same nodes as node_keys: an instance never leaves or changes its cluster.
    noded = [(refs[g["resource_id"]], g) for g in node_groups]
    noded.sort(
        key=lambda p: (p[0].cluster_name, str(p[0].cluster_id), p[0].rank or 0, p[1]["meter"], p[1]["first"])
    )
    return [draft(g, None) for g in groups] + [draft(g, node) for node, g in noded]


def _next_number(month: date) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [NUMBER_SEQUENCE])
        (value,) = cursor.fetchone()
    return f"{NUMBER_PREFIX}-{month:%Y-%m}-{value:06d}"


def _check_ended(month: date, now: datetime) -> None:
    if periods.bounds(month)[1] > now:
        raise InvalidInput(
            f"{month:%Y-%m} has not ended yet; a month is closed after its last second.",
            fields={"month": ["The month has not ended yet."]},
        )


def invoice_close(*, tenant: Tenant, month: date, now: datetime | None = None) -> Invoice:
    """Build and finalize the tenant's invoice for the month; the existing one if already finalized."""
    start, end = periods.bounds(month)
    now = now or timezone.now()
    _check_ended(month, now)
    with transaction.atomic():
        # Serialize closes of one tenant; the unique constraint backs this up.
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        invoice, _ = Invoice.objects.get_or_create(
            tenant=tenant, month=month, defaults={"period_start": start, "period_end": end}
        )
        if invoice.status == InvoiceStatus.FINALIZED:
            return invoice
        InvoiceLine.objects.filter(invoice=invoice).delete()  # a draft from an interrupted close
        lines = draft_lines(tenant=tenant, month=month)
        InvoiceLine.objects.bulk_create(
            InvoiceLine(
                invoice=invoice,
                position=index,
                meter=line.meter,
                description=line.description,
                quantity_seconds=line.quantity_seconds,
                unit_price_per_hour=line.unit_price_per_hour,
                amount=line.amount,
                cluster_id=line.node.cluster_id if line.node else None,
                cluster_name=line.node.cluster_name if line.node else "",
                rank=line.node.rank if line.node else None,
            )
            for index, line in enumerate(lines, start=1)
        )
        subtotal = sum((line.amount for line in lines), Decimal("0.00"))
        invoice.subtotal = subtotal
        invoice.credits_applied = credits_for_month(
            tenant=tenant,
            period_end=end,
            month_usage=sum((line.exact_amount for line in lines), Decimal("0")),
            subtotal=subtotal,
        )
        invoice.total = subtotal - invoice.credits_applied
        invoice.status = InvoiceStatus.FINALIZED
        invoice.number = _next_number(month)
        invoice.finalized_at = now
        invoice.save()
        audit_record(
            actor=None,
            action="invoice.finalized",
            target=invoice,
            tenant=tenant,
            metadata={
                "number": invoice.number,
                "month": f"{month:%Y-%m}",
                "subtotal": str(invoice.subtotal),
                "credits_applied": str(invoice.credits_applied),
                "total": str(invoice.total),
            },
        )
    logger.info("invoice %s finalized for %s %s: total %s", invoice.number, tenant.slug, month, invoice.total)
    return invoice


def tenants_to_bill(*, month: date) -> Any:
    """Tenants with ledger rows in the month."""
    start, end = periods.bounds(month)
    ids = (
        UsageRecord.objects.annotate(started=Lower("period"))
        .filter(started__gte=start, started__lt=end)
        .values("tenant_id")
    )
    return Tenant.objects.filter(pk__in=ids).order_by("slug")


def period_close(*, month: date, tenant: Tenant | None = None, now: datetime | None = None) -> list[Invoice]:
    """Close the month for one tenant (even without usage: an invoice of zero) or for every tenant with
    usage in it. Each tenant closes in its own transaction, so one failure does not hold back the rest."""
    _check_ended(month, now or timezone.now())
    targets = [tenant] if tenant is not None else list(tenants_to_bill(month=month))
    return [invoice_close(tenant=t, month=month, now=now) for t in targets]
