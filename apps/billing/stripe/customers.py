"""What every Stripe flow shares: the tenant's Stripe Customer (created on first use), the account currency
and amounts in cents. Only gateway.py talks to Stripe."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.billing.stripe import gateway as gw
from apps.billing.stripe.models import StripeCustomer
from apps.tenants.models import Tenant


def customer_for(*, tenant: Tenant, client: gw.StripeGateway | None = None) -> StripeCustomer:
    """The tenant's Stripe Customer, created on first use. The Idempotency-Key is derived from the tenant, so
    concurrent or retried calls (within Stripe's 24 h key window) create one customer; the unique
    OneToOne keeps one row."""
    existing = StripeCustomer.objects.filter(tenant=tenant).first()
    if existing is not None:
        return existing
    client = client or gw.gateway()
    owner_email = (
        tenant.memberships.filter(role="owner")
        .order_by("created_at")
        .values_list("user__email", flat=True)
        .first()
    )
    customer = client.create_customer(
        tenant_id=str(tenant.pk),
        name=tenant.name,
        email=owner_email,
        idempotency_key=f"gpucloud-customer:{tenant.pk}",
    )
    try:
        with transaction.atomic():
            record, _ = StripeCustomer.objects.get_or_create(
                tenant=tenant, defaults={"customer_id": customer.id}
            )
    except IntegrityError:
        record = StripeCustomer.objects.get(tenant=tenant)
    return record


def customer_by_id(customer_id: str | None) -> StripeCustomer | None:
    """Our record (with its tenant) of the Stripe Customer an event names, or None when it is not ours."""
    if not customer_id:
        return None
    return StripeCustomer.objects.select_related("tenant").filter(customer_id=customer_id).first()


def currency() -> str:
    return str(settings.STRIPE_CURRENCY or "usd")


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
