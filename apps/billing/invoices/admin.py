from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.invoices.models import Invoice, InvoiceLine


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fields = (
        "position",
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
