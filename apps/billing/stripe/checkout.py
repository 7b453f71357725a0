"""Paying through Stripe Checkout: top-ups (mode=payment) and card set-up (mode=setup), and the customer
portal. Opening a session records it (CheckoutSession) and audits it; what Stripe later reports about it is
handled in events.py."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import currency, customer_for, to_cents
from apps.billing.stripe.models import CheckoutKind, CheckoutSession
from apps.core.errors import InvalidInput
from apps.tenants.models import Tenant

CENTS = Decimal("0.01")


def parse_topup_amount(raw: Any) -> Decimal:
    """The amount of a top-up in the account currency: 2 decimal places, within the configured bounds."""
    try:
        amount = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        amount = Decimal("NaN")
    if not amount.is_finite() or amount != amount.quantize(CENTS):
        raise InvalidInput(
            "amount: must be a decimal number with at most 2 places.",
            fields={"amount": ['Must be a decimal number with at most 2 places, e.g. "50.00".']},
        )
    low, high = Decimal(str(settings.STRIPE_TOPUP_MIN)), Decimal(str(settings.STRIPE_TOPUP_MAX))
    if not low <= amount <= high:
        raise InvalidInput(
            f"amount: must be between {low} and {high}.",
            fields={"amount": [f"Must be between {low} and {high}."]},
        )
    return amount


def _console_url(tenant: Tenant, suffix: str) -> str:
    return f"{str(settings.SITE_URL).rstrip('/')}/t/{tenant.slug}/billing/{suffix}"


@dataclass(frozen=True)
class CheckoutOpened:
    record: CheckoutSession
    url: str


def checkout_topup_create(*, actor: Any, tenant: Tenant, amount: Any) -> CheckoutOpened:
    """Open a Checkout Session (mode=payment) for a top-up. The credit is granted when Stripe reports the
    session paid (checkout.session.completed), never here."""
    value = parse_topup_amount(amount)
    client = gw.gateway()
    customer = customer_for(tenant=tenant, client=client)
    session = client.create_payment_checkout(
        customer_id=customer.customer_id,
        currency=currency(),
        amount_cents=to_cents(value),
        product_name=f"gpucloud credit for {tenant.slug}",
        success_url=_console_url(tenant, "?topup=success"),
        cancel_url=_console_url(tenant, "?topup=cancelled"),
        tenant_id=str(tenant.pk),
    )
    with transaction.atomic():
        record = CheckoutSession.objects.create(
            session_id=session.id, tenant=tenant, kind=CheckoutKind.TOPUP, amount=value, created_by=actor
        )
        audit_record(
            actor=actor,
            action="billing.topup_checkout",
            target=record,
            tenant=tenant,
            metadata={"amount": str(value), "session_id": session.id},
        )
    return CheckoutOpened(record=record, url=session.url or "")


def checkout_card_setup_create(*, actor: Any, tenant: Tenant) -> CheckoutOpened:
    client = gw.gateway()
    customer = customer_for(tenant=tenant, client=client)
    session = client.create_setup_checkout(
        customer_id=customer.customer_id,
        currency=currency(),
        success_url=_console_url(tenant, "?card=success"),
        cancel_url=_console_url(tenant, "?card=cancelled"),
        tenant_id=str(tenant.pk),
    )
    with transaction.atomic():
        record = CheckoutSession.objects.create(
            session_id=session.id, tenant=tenant, kind=CheckoutKind.CARD_SETUP, created_by=actor
        )
        audit_record(actor=actor, action="billing.card_setup_checkout", target=record, tenant=tenant)
    return CheckoutOpened(record=record, url=session.url or "")


def portal_session_create(*, actor: Any, tenant: Tenant) -> str:
    client = gw.gateway()
    customer = customer_for(tenant=tenant, client=client)
    return client.create_portal_session(
        customer_id=customer.customer_id, return_url=_console_url(tenant, "")
    ).url
