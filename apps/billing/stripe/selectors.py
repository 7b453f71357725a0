"""Reads about a tenant's Stripe standing and its invoices' payment, for the wallet's launch check and the
billing API."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist

from apps.billing.invoices.models import Invoice, InvoiceStatus
from apps.billing.models import BillingMode
from apps.billing.stripe.models import BillingStatus, CollectionState, StripeCustomer
from apps.tenants.models import Tenant


def billing_status_of(*, tenant: Tenant) -> str:
    """active, past_due (an invoice payment failed: no new launches) or suspended."""
    status = StripeCustomer.objects.filter(tenant=tenant).values_list("billing_status", flat=True).first()
    return status or BillingStatus.ACTIVE


def launch_block_reason(*, tenant: Tenant) -> str | None:
    """Why a launch or start must be refused for payment reasons, or None. The wallet's limit check reads
    this next to the balance (402 insufficient_funds)."""
    if billing_status_of(tenant=tenant) != BillingStatus.ACTIVE:
        return "An invoice is past due; pay it in the billing portal to launch again."
    return None


def card_on_file(*, tenant: Tenant) -> bool:
    return StripeCustomer.objects.filter(tenant=tenant, card_on_file=True).exists()


def decide(invoice: Invoice, mode: str) -> str:
    """What becomes of a finalized invoice (apps/billing/stripe/collection.py): a zero total is nothing_due;
    a prepaid tenant's positive total is prepaid (not charged: wallet debt the next top-up pays); a postpaid
    tenant's positive total is pending, to be collected through Stripe."""
    if invoice.total <= 0:
        return CollectionState.NOTHING_DUE
    if mode != BillingMode.POSTPAID:
        return CollectionState.PREPAID
    return CollectionState.PENDING


def payment_status_of(invoice: Invoice) -> str:
    """Where the invoice's payment stands (CollectionState): its collection record's state, or, for an
    invoice without one (a draft, an invoice from before collection, a record not written yet), what the
    record will say. Reads `invoice.stripe_collection` and `invoice.tenant.billing_account`: select them
    with the invoice to avoid a query per invoice."""
    try:
        return str(invoice.stripe_collection.state)
    except ObjectDoesNotExist:
        pass
    if invoice.status != InvoiceStatus.FINALIZED:
        return CollectionState.NOTHING_DUE
    try:
        mode = invoice.tenant.billing_account.mode
    except ObjectDoesNotExist:
        mode = BillingMode.PREPAID
    return decide(invoice, mode)
