"""Staff views of the Stripe state: read-only, since Stripe and the webhook are the source of these rows."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.billing.stripe.models import (
    CheckoutSession,
    MeterEventOutbox,
    StripeCustomer,
    StripeEvent,
    StripeInvoice,
    StripeMeter,
)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StripeCustomer)
class StripeCustomerAdmin(_ReadOnly):
    list_display = ["tenant", "customer_id", "billing_status", "past_due_since", "card_on_file"]
    list_filter = ["billing_status", "card_on_file"]
    search_fields = ["tenant__slug", "customer_id"]


@admin.register(StripeMeter)
class StripeMeterAdmin(_ReadOnly):
    list_display = ["meter_key", "price_per_unit_hour", "unit", "event_name", "meter_id", "price_id"]
    list_filter = ["unit"]
    search_fields = ["meter_key", "event_name"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(_ReadOnly):
    list_display = ["session_id", "tenant", "kind", "amount", "created_at", "completed_at"]
    list_filter = ["kind"]
    search_fields = ["session_id", "tenant__slug"]


@admin.register(MeterEventOutbox)
class MeterEventOutboxAdmin(_ReadOnly):
    list_display = ["identifier", "value", "attempts", "next_attempt_at", "sent_at", "last_error"]
    list_filter = [("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["identifier"]


@admin.register(StripeEvent)
class StripeEventAdmin(_ReadOnly):
    list_display = ["id", "type", "object_id", "received_at", "processed_at", "attempts", "last_error"]
    list_filter = ["type"]
    search_fields = ["id", "object_id"]


@admin.register(StripeInvoice)
class StripeInvoiceAdmin(_ReadOnly):
    list_display = [
        "invoice",
        "tenant",
        "state",
        "amount_cents",
        "stripe_invoice_id",
        "attempts",
        "next_attempt_at",
        "last_error",
    ]
    list_filter = ["state"]
    search_fields = ["invoice__number", "tenant__slug", "stripe_invoice_id"]
