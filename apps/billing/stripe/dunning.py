"""Dunning: an unpaid Stripe invoice makes the tenant past due (new launches refused,
selectors.launch_block_reason); past the grace (BILLING_PAST_DUE_GRACE_HOURS) it is suspended for non-payment
and its instances stopped (standing.py); a paid invoice makes it active again and lifts that suspension."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.stops import StopReason
from apps.billing.stripe import gateway as gw
from apps.billing.stripe import standing
from apps.billing.stripe.customers import customer_by_id
from apps.billing.stripe.models import BillingStatus, StripeCustomer, StripeEvent
from apps.tenants.models import TenantStatus
from apps.tenants.services import tenant_reactivate

PAST_DUE_REASON = standing.PAST_DUE_REASON


def enforce_past_due(*, now: datetime | None = None) -> int:
    """Suspend tenants past due for longer than the grace and stop their instances (stopped, never
    deleted). Returns how many tenants were suspended."""
    now = now or timezone.now()
    deadline = now - timedelta(hours=settings.BILLING_PAST_DUE_GRACE_HOURS)
    suspended = 0
    due = StripeCustomer.objects.select_related("tenant").filter(
        billing_status=BillingStatus.PAST_DUE, past_due_since__lte=deadline
    )
    for customer in due:
        with transaction.atomic():
            standing.suspend_for_non_payment(
                tenant=customer.tenant, reason=PAST_DUE_REASON, stop_reason=StopReason.PAYMENT_PAST_DUE
            )
            customer.billing_status = BillingStatus.SUSPENDED
            customer.save(update_fields=["billing_status", "updated_at"])
            suspended += 1
    return suspended


def _on_invoice_paid(client: gw.StripeGateway, event: StripeEvent) -> None:
    invoice = client.retrieve_invoice(event.object_id)
    customer = customer_by_id(invoice.customer_id)
    if customer is None or invoice.status != "paid":
        return
    was = customer.billing_status
    customer.billing_status, customer.past_due_since = BillingStatus.ACTIVE, None
    customer.save(update_fields=["billing_status", "past_due_since", "updated_at"])
    tenant = customer.tenant
    if tenant.status == TenantStatus.SUSPENDED and tenant.status_reason == PAST_DUE_REASON:
        tenant_reactivate(actor=None, tenant=tenant)
    if was != BillingStatus.ACTIVE:
        audit_record(
            actor=None,
            action="billing.payment_restored",
            target=tenant,
            tenant=tenant,
            changes={"billing_status": {"from": was, "to": BillingStatus.ACTIVE}},
            metadata={"invoice": invoice.id},
        )


def _on_invoice_payment_failed(client: gw.StripeGateway, event: StripeEvent) -> None:
    invoice = client.retrieve_invoice(event.object_id)
    customer = customer_by_id(invoice.customer_id)
    if customer is None or invoice.status == "paid":
        return  # delivered after a later success: the re-fetched invoice says it is paid
    if customer.billing_status == BillingStatus.ACTIVE:
        customer.billing_status, customer.past_due_since = BillingStatus.PAST_DUE, timezone.now()
        customer.save(update_fields=["billing_status", "past_due_since", "updated_at"])
        audit_record(
            actor=None,
            action="billing.past_due",
            target=customer.tenant,
            tenant=customer.tenant,
            changes={"billing_status": {"from": BillingStatus.ACTIVE, "to": BillingStatus.PAST_DUE}},
            metadata={"invoice": invoice.id},
        )


HANDLERS: dict[str, Callable[[gw.StripeGateway, StripeEvent], None]] = {
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
}
