from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.invoices.models import Invoice, InvoiceLine, PeriodClose


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fields = (
        "position",
        "kind",
        "usage_month",
        "meter",
        "description",
        "cluster_name",
        "rank",
        "quantity_seconds",
        "unit_price_per_hour",
        "amount",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Read-only: invoices are made by closing a period (close_billing_period) and never edited."""

    list_display = ["number", "tenant", "month", "status", "subtotal", "credits_applied", "total"]
    list_filter = ["status", "month"]
    search_fields = ["number", "tenant__slug"]
    inlines = [InvoiceLineInline]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PeriodClose)
class PeriodCloseAdmin(admin.ModelAdmin):
    """Read-only: each run of the month close over every tenant, with the tenants it could not invoice (run
    close_billing_period again for them)."""

    list_display = ["month", "started_at", "finished_at", "invoices", "failed_tenants"]
    list_filter = ["month"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
