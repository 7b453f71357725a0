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


class InvoiceLine(models.Model):
    """Usage of one meter at one unit price: the exact seconds, and the amount rounded to cents once. A node
    of a cluster has lines of its own (per meter and unit price too), grouped under its cluster."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
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
                fields=["invoice", "meter", "unit_price_per_hour"],
                condition=Q(cluster_id__isnull=True),
                name="invoice_line_unique_meter_price",
            ),
            models.UniqueConstraint(
                fields=["invoice", "cluster_id", "rank", "meter", "unit_price_per_hour"],
                condition=Q(cluster_id__isnull=False),
                name="invoice_line_unique_node_meter_price",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}#{self.position} {self.meter}@{self.unit_price_per_hour}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._invoice_finalized():
            raise InvoiceFinalized("The lines of a finalized invoice cannot change.")
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
