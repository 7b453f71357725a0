"""Monthly invoices, built from the usage ledger at period close and immutable once finalized.

Money is Decimal. Ledger rows carry 6 places; an invoice line is rated from its exact seconds and unit price
and rounded to cents (ROUND_HALF_UP) once, per line. Corrections of a finalized invoice are credit notes or
adjustments on a later invoice, never edits: `save()` and `delete()` refuse them here, and database
triggers (migration 0002) refuse UPDATE of the money columns and DELETE of finalized rows from any client.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.errors import Conflict

CENTS = Decimal("0.01")
HOUR_PLACES = Decimal("0.000001")
NUMBER_PREFIX = "GPC"
NUMBER_SEQUENCE = "billing_invoices_number_seq"


class InvoiceFinalized(Conflict):
    code = "invoice_finalized"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    FINALIZED = "finalized", "Finalized"


class Invoice(models.Model):
    """One tenant's bill for one calendar month (UTC)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="invoices")
    month = models.DateField(help_text="The first day of the billed month.")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(help_text="Exclusive.")
    status = models.CharField(max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)
    currency = models.CharField(max_length=3, default="USD")
    subtotal = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    credits_applied = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    created_at = models.DateTimeField(default=timezone.now)
    finalized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-month", "tenant"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="invoice_one_per_tenant_month"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False, finalized_at__isnull=False),
                name="invoice_finalized_has_number",
            ),
            models.CheckConstraint(
                condition=Q(credits_applied__gte=0, credits_applied__lte=models.F("subtotal")),
                name="invoice_credits_within_subtotal",
            ),
            models.CheckConstraint(
                condition=Q(total=models.F("subtotal") - models.F("credits_applied")),
                name="invoice_total_is_subtotal_minus_credits",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.tenant_id} {self.month:%Y-%m}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._stored_finalized():
            raise InvoiceFinalized(
                f"Invoice {self.number} is finalized and cannot change; issue a credit note or an adjustment "
                "on a later invoice."
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self._stored_finalized():
            raise InvoiceFinalized(f"Invoice {self.number} is finalized and cannot be deleted.")
        return super().delete(*args, **kwargs)

    @property
    def is_finalized(self) -> bool:
        return self.status == InvoiceStatus.FINALIZED

    def _stored_finalized(self) -> bool:
        return (
            not self._state.adding
            and Invoice.objects.filter(pk=self.pk, status=InvoiceStatus.FINALIZED).exists()
        )


class LineKind(models.TextChoices):
    USAGE = "usage", "Usage of the invoice's month"
    ADJUSTMENT = "adjustment", "Usage of an earlier month that reached the ledger after it was invoiced"
    CREDIT = "credit", "Credit carried between invoices, or returned to the wallet"


class InvoiceLine(models.Model):
    """Usage of one meter at one unit price: the exact seconds, and the amount rounded to cents once. A node
    of a cluster has lines of its own (per meter and unit price too), grouped under its cluster.

    `usage_month` is the month the usage happened in: the invoice's own month, or an earlier one for an
    adjustment (rows that reached the ledger after that month was invoiced; services.py)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(
        max_length=16, choices=LineKind.choices, default=LineKind.USAGE, db_default=LineKind.USAGE
    )
    usage_month = models.DateField(help_text="The first day of the month the usage happened in.")
    meter = models.CharField(max_length=64)  # instance_seconds:gpu-h100x1
    description = models.CharField(max_length=200)
    quantity_seconds = models.BigIntegerField()
    unit_price_per_hour = models.DecimalField(max_digits=12, decimal_places=4)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    # The cluster of a node's line, copied when the invoice is built (not a foreign key): renaming or
    # terminating the cluster later does not change a finalized invoice. Null for everything else.
    cluster_id = models.UUIDField(null=True, blank=True)
    cluster_name = models.CharField(max_length=40, blank=True)
    rank = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_unique_position"),
            models.UniqueConstraint(
                fields=["invoice", "usage_month", "meter", "unit_price_per_hour"],
                condition=Q(cluster_id__isnull=True),
                name="invoice_line_unique_meter_price",
            ),
            models.UniqueConstraint(
                fields=["invoice", "usage_month", "cluster_id", "rank", "meter", "unit_price_per_hour"],
                condition=Q(cluster_id__isnull=False),
                name="invoice_line_unique_node_meter_price",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}#{self.position} {self.meter}@{self.unit_price_per_hour}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._invoice_finalized():
            raise InvoiceFinalized("The lines of a finalized invoice cannot change.")
        if self.usage_month is None:
            self.usage_month = self.invoice.month
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self._invoice_finalized():
            raise InvoiceFinalized("The lines of a finalized invoice cannot be deleted.")
        return super().delete(*args, **kwargs)

    @property
    def quantity_hours(self) -> Decimal:
        """Hours with 6 places, for display; the exact figure is `quantity_seconds`."""
        return (Decimal(self.quantity_seconds) / Decimal(3600)).quantize(HOUR_PLACES)

    def _invoice_finalized(self) -> bool:
        return Invoice.objects.filter(pk=self.invoice_id, status=InvoiceStatus.FINALIZED).exists()


class CloseSnapshot(models.Model):
    """What closing a month left for the next close of the tenant: its wallet at the end of the month and
    the credit carried to its next invoice (services.py, docs/billing.md "Invoices").

    `state` is apps.billing.snapshots.state_to_json(wallet.State) at `cutoff` (the end of the month): it
    covers the grants and credit reversals dated by then and the ledger rows ended by then that the close
    saw. Rows created before `settled_before` (the close's start less BILLING_SNAPSHOT_MARGIN_SECONDS) were
    committed when it read them; of the later ones it counts those it holds (`recent_rows`,
    `recent_reversals`), so the next close, finding more, knows a row arrived late and computes that
    tenant's wallet from its whole history instead. `rebuilt`: this state was computed from the whole history
    (the tenant's first close, or a late row), not carried on from the previous snapshot. Written once."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    month = models.DateField()
    invoice = models.OneToOneField(Invoice, on_delete=models.CASCADE, related_name="close_snapshot")
    cutoff = models.DateTimeField()
    started_at = models.DateTimeField()
    settled_before = models.DateTimeField()
    state = models.JSONField()
    recent_rows = models.PositiveIntegerField(default=0)
    recent_reversals = models.PositiveIntegerField(default=0)
    rebuilt = models.BooleanField(default=False)
    # A negative remainder of the invoice (late reversals beyond what it bills) owed back in cash: the next
    # invoice of the tenant takes it off as a line (LineKind.CREDIT).
    carried_credit = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))

    class Meta:
        ordering = ["tenant", "month"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="close_snapshot_one_per_tenant_month"),
            models.CheckConstraint(
                condition=Q(carried_credit__gte=0), name="close_snapshot_carry_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.month:%Y-%m}"


class PeriodClose(models.Model):
    """One run of the month close over every tenant (services.period_close): a month with a row here is
    closed, so its rows that reach the ledger later are adjustments on a later invoice (a tenant invoiced for
    the month has its month closed too). `started_at` bounds the rows the next close looks at again."""

    month = models.DateField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    invoices = models.PositiveIntegerField(default=0)
    failed_tenants = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["month", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} at {self.started_at:%Y-%m-%dT%H:%M:%S}"
