"""Writes of billing: credit grants, the billing mode (staff), the tenant's monthly budget, and prices."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record, diff
from apps.billing.models import BillingAccount, BillingMode, CreditGrant, CreditKind, PriceVersion
from apps.catalog.models import InstanceType
from apps.core import funds
from apps.core.errors import Conflict, InvalidInput
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

CENTS = Decimal("0.01")
MAX_GRANT = Decimal("1000000.00")


def _money(value: Any, field: str, *, allow_zero: bool = False) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidInput(
            f"{field}: not a decimal number.", fields={field: ["Not a decimal number."]}
        ) from exc
    if not amount.is_finite():
        raise InvalidInput(f"{field}: not a decimal number.", fields={field: ["Not a decimal number."]})
    if amount != amount.quantize(CENTS, rounding=ROUND_HALF_UP):
        raise InvalidInput(
            f"{field}: at most 2 decimal places.", fields={field: ["At most 2 decimal places."]}
        )
    if amount < 0 or (amount == 0 and not allow_zero) or amount > MAX_GRANT:
        message = f"Must be {'at least 0' if allow_zero else 'more than 0'} and at most {MAX_GRANT}."
        raise InvalidInput(f"{field}: {message}", fields={field: [message]})
    return amount.quantize(CENTS)


def _announce_funds(tenant: Tenant) -> None:
    """Once this commits, tell the apps that cut a tenant off when its money ran out that it may have come
    back (apps/core/funds.py; object storage restores the tenant's keys). A receiver's failure is logged,
    never raised: the payment is recorded either way, and their periodic checks catch up."""
    tenant_id = tenant.pk

    def send() -> None:
        for receiver, result in funds.funds_changed.send_robust(sender=Tenant, tenant_id=tenant_id):
            if isinstance(result, Exception):
                logger.error("funds_changed receiver %r failed: %s", receiver, result)

    transaction.on_commit(send)


def billing_account_for(tenant: Tenant) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(tenant=tenant)
    return account


@transaction.atomic
def credit_grant_create(
    *,
    tenant: Tenant,
    kind: str,
    amount: Decimal | str,
    reason: str,
    expires_at: datetime | None = None,
    external_id: str | None = None,
    actor: Any = None,
) -> CreditGrant:
    """Add credit to the tenant's wallet. Idempotent on `external_id` (e.g. a Stripe Checkout Session id):
    a second call with the same id returns the first grant and changes nothing."""
    if external_id:
        existing = CreditGrant.objects.filter(external_id=external_id).first()
        if existing is not None:
            if existing.tenant_id != tenant.pk:
                raise Conflict("This external id already credited another tenant.", code="grant_conflict")
            return existing
    if kind not in CreditKind.values:
        raise InvalidInput("kind: unknown credit kind.", fields={"kind": [f"One of {CreditKind.values}."]})
    value = _money(amount, "amount")
    if kind == CreditKind.PAID and expires_at is not None:
        raise InvalidInput(
            "Paid credit never expires.", fields={"expires_at": ["Paid credit never expires."]}
        )
    if expires_at is not None and timezone.is_naive(expires_at):
        raise InvalidInput("expires_at: needs a timezone.", fields={"expires_at": ["Needs a timezone."]})
    grant = CreditGrant(
        tenant=tenant,
        kind=kind,
        amount=value,
        reason=(reason or "")[:300],
        expires_at=expires_at,
        external_id=external_id or None,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    try:
        with transaction.atomic():
            grant.save()
    except IntegrityError:
        # A concurrent delivery of the same external id won the race: answer with its grant.
        winner = CreditGrant.objects.filter(external_id=external_id).first() if external_id else None
        if winner is None or winner.tenant_id != tenant.pk:
            raise
        return winner
    audit_record(
        actor=actor,
        action="billing.credit_grant",
        target=grant,
        tenant=tenant,
        changes={
            "kind": kind,
            "amount": str(value),
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        metadata={"reason": grant.reason, "external_id": external_id or ""},
    )
    _announce_funds(tenant)
    return grant


def signup_credit_grant(*, tenant: Tenant, actor: Any = None) -> CreditGrant | None:
    """The credit every new tenant starts with (settings.BILLING_SIGNUP_CREDIT; none when 0)."""
    amount = Decimal(str(settings.BILLING_SIGNUP_CREDIT or "0"))
    if amount <= 0:
        return None
    return credit_grant_create(
        tenant=tenant,
        kind=CreditKind.PROMOTIONAL,
        amount=amount,
        reason="Sign-up credit",
        external_id=f"signup:{tenant.pk}",
        actor=actor,
    )


@transaction.atomic
def billing_mode_set(
    *, actor: Any, tenant: Tenant, mode: str, credit_limit: Decimal | str | None = None
) -> BillingAccount:
    """Staff only: switch a tenant between prepaid and postpaid, with the postpaid credit limit."""
    if mode not in BillingMode.values:
        raise InvalidInput("mode: unknown billing mode.", fields={"mode": [f"One of {BillingMode.values}."]})
    account = BillingAccount.objects.select_for_update().filter(tenant=tenant).first() or billing_account_for(
        tenant
    )
    limit = (
        account.credit_limit
        if credit_limit is None
        else _money(credit_limit, "credit_limit", allow_zero=True)
    )
    before = {"mode": account.mode, "credit_limit": str(account.credit_limit)}
    account.mode, account.credit_limit = mode, limit
    account.save(update_fields=["mode", "credit_limit", "updated_at"])
    changes = diff(before, {"mode": account.mode, "credit_limit": str(account.credit_limit)})
    if changes:
        audit_record(actor=actor, action="billing.mode_set", target=account, tenant=tenant, changes=changes)
        _announce_funds(tenant)
    return account


@transaction.atomic
def budget_set(
    *, actor: Any, tenant: Tenant, monthly_budget: Decimal | str | None, hard: bool = False
) -> BillingAccount:
    """The tenant's own monthly budget (None: no budget). Hard: launches refused and instances stopped once
    month-to-date spend reaches it."""
    value = None if monthly_budget is None else _money(monthly_budget, "monthly_budget")
    account = BillingAccount.objects.select_for_update().filter(tenant=tenant).first() or billing_account_for(
        tenant
    )
    before = {
        "monthly_budget": str(account.monthly_budget) if account.monthly_budget is not None else None,
        "budget_hard": account.budget_hard,
    }
    account.monthly_budget, account.budget_hard = value, bool(hard) and value is not None
    account.save(update_fields=["monthly_budget", "budget_hard", "updated_at"])
    after = {
        "monthly_budget": str(account.monthly_budget) if account.monthly_budget is not None else None,
        "budget_hard": account.budget_hard,
    }
    changes = diff(before, after)
    if changes:
        audit_record(actor=actor, action="billing.budget_set", target=account, tenant=tenant, changes=changes)
        _announce_funds(tenant)
    return account


@transaction.atomic
def price_change(
    *,
    actor: Any,
    instance_type: InstanceType,
    price_per_hour: Decimal,
    effective_from: datetime | None = None,
) -> PriceVersion:
    """A new price for an instance type, from `effective_from` (now by default) on. Running instances are
    billed at it from then; the ledger keeps the old price for the time before."""
    if price_per_hour < 0:
        raise InvalidInput("A price cannot be negative.", fields={"price_per_hour": ["Must be 0 or more."]})
    moment = (effective_from or timezone.now()).replace(microsecond=0)
    locked = InstanceType.objects.select_for_update().get(pk=instance_type.pk)
    before = locked.price_per_hour
    version, _ = PriceVersion.objects.update_or_create(
        instance_type=locked, effective_from=moment, defaults={"price_per_hour": price_per_hour}
    )
    locked.price_per_hour = price_per_hour
    locked.save(update_fields=["price_per_hour"])
    audit_record(
        actor=actor,
        action="billing.price_change",
        target=locked,
        changes={"price_per_hour": {"from": str(before), "to": str(price_per_hour)}},
        metadata={"effective_from": moment.isoformat()},
    )
    return version
