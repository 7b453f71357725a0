"""Dunning: an unpaid Stripe invoice makes the tenant past due (new launches refused,
selectors.launch_block_reason); past the grace (BILLING_PAST_DUE_GRACE_HOURS) it is suspended for non-payment
and its instances stopped (standing.py); a paid (or voided) invoice makes it active again and lifts that
suspension, once none of its invoices is still unpaid. Each event also moves the collection record of an
invoice of ours (collection.py), from the invoice as Stripe reports it when re-fetched."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.stops import StopReason
from apps.billing.stripe import collection, standing
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import customer_by_id
from apps.billing.stripe.models import BillingStatus, StripeCustomer, StripeEvent, StripeInvoice
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


def _customer_of(invoice: gw.Invoice, record: StripeInvoice | None) -> StripeCustomer | None:
    customer = customer_by_id(invoice.customer_id)
    if customer is None and record is not None:
        customer = StripeCustomer.objects.select_related("tenant").filter(tenant=record.tenant).first()
    return customer


def _synced(invoice: gw.Invoice, *, payment_failed: bool = False) -> StripeInvoice | None:
    """Our collection record of the invoice (None when it is not one of ours), moved to Stripe's status."""
    record = collection.record_for(invoice)
    if record is not None:
        collection.record_sync(record, invoice, payment_failed=payment_failed)
    return record


def _mark_past_due(customer: StripeCustomer, invoice_id: str) -> None:
    if customer.billing_status != BillingStatus.ACTIVE:
        return  # already past due (its grace runs from the first failure) or suspended
    customer.billing_status, customer.past_due_since = BillingStatus.PAST_DUE, timezone.now()
    customer.save(update_fields=["billing_status", "past_due_since", "updated_at"])
    audit_record(
        actor=None,
        action="billing.past_due",
        target=customer.tenant,
        tenant=customer.tenant,
        changes={"billing_status": {"from": BillingStatus.ACTIVE, "to": BillingStatus.PAST_DUE}},
        metadata={"invoice": invoice_id},
    )


def _restore_if_settled(customer: StripeCustomer, invoice_id: str) -> None:
    """Back to active, and a suspension for non-payment lifted, unless another of the tenant's invoices is
    still unpaid after Stripe's attempts."""
    if collection.has_outstanding(tenant_id=customer.tenant_id):
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
            metadata={"invoice": invoice_id},
        )


def _on_invoice_paid(client: gw.StripeGateway, event: StripeEvent) -> None:
    invoice = client.retrieve_invoice(event.object_id)
    record = _synced(invoice)
    customer = _customer_of(invoice, record)
    if customer is not None and invoice.status == "paid":
        _restore_if_settled(customer, invoice.id)


def _on_invoice_payment_failed(client: gw.StripeGateway, event: StripeEvent) -> None:
    invoice = client.retrieve_invoice(event.object_id)
    if invoice.status in ("paid", "void"):
        # Delivered after a later success (or the invoice was voided since): the re-fetch is the truth.
        _synced(invoice)
        return
    record = _synced(invoice, payment_failed=True)
    customer = _customer_of(invoice, record)
    if customer is not None:
        _mark_past_due(customer, invoice.id)


def _on_invoice_voided(client: gw.StripeGateway, event: StripeEvent) -> None:
    """Voided (by staff in Stripe): nothing is owed on it any more, so it counts like a payment."""
    invoice = client.retrieve_invoice(event.object_id)
    record = _synced(invoice)
    customer = _customer_of(invoice, record)
    if customer is not None and invoice.status == "void":
        _restore_if_settled(customer, invoice.id)


def _on_invoice_marked_uncollectible(client: gw.StripeGateway, event: StripeEvent) -> None:
    """Stripe gave up collecting it; it is still owed: the tenant is past due (and suspended after the
    grace) until it is paid."""
    invoice = client.retrieve_invoice(event.object_id)
    record = _synced(invoice)
    customer = _customer_of(invoice, record)
    if customer is not None and invoice.status == "uncollectible":
        _mark_past_due(customer, invoice.id)


HANDLERS: dict[str, Callable[[gw.StripeGateway, StripeEvent], None]] = {
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
    "invoice.voided": _on_invoice_voided,
    "invoice.marked_uncollectible": _on_invoice_marked_uncollectible,
}
