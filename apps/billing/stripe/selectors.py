"""Reads about a tenant's Stripe standing, for the wallet's launch check and the billing API."""

from __future__ import annotations

from apps.billing.stripe.models import BillingStatus, StripeCustomer
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
