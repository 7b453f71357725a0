"""Hard limits enforced by us, from our own ledger: refusing launches and starts (402 insufficient_funds),
stopping running instances when the runway ends, and budget alerts at 50, 80 and 100 percent."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.models import BillingAccount, BillingMode, BudgetAlert
from apps.billing.selectors import Wallet, month_start, wallet_of
from apps.core import metrics
from apps.core.errors import PaymentRequired
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

ZERO = Decimal("0")
THRESHOLDS = (50, 80, 100)
STOPPABLE = ("pending", "provisioning", "starting", "running")


def refusal(w: Wallet) -> str | None:
    """Why the tenant may not launch or start an instance now, or None."""
    if w.headroom <= 0:
        if w.mode == BillingMode.POSTPAID:
            return (
                "The tenant has reached its credit limit; pay the open balance to launch or start instances."
            )
        return "The prepaid balance is used up; add credit to launch or start instances."
    budget_left = w.budget_left
    if budget_left is not None and budget_left <= 0:
        return "The tenant's hard monthly budget is used up; raise the budget to launch or start instances."
    return None


def require_funds(*, tenant: Tenant, now: datetime | None = None) -> None:
    """Called by instance_launch and instance_act(START) before admission."""
    from apps.billing.stripe.selectors import launch_block_reason

    w = wallet_of(tenant, now)
    past_due = launch_block_reason(tenant=tenant)
    message = past_due or refusal(w)
    if message is not None:
        metrics.refused("payment_past_due" if past_due else "insufficient_funds")
        raise PaymentRequired(
            message,
            details={
                "balance": str(w.balance),
                "mode": w.mode,
                "credit_limit": str(w.credit_limit),
                "monthly_budget": str(w.monthly_budget) if w.monthly_budget is not None else None,
                "month_to_date_spend": str(w.month_to_date_spend),
            },
        )


def funds_exhausted(*, tenant: Tenant, now: datetime | None = None) -> str | None:
    """Why the tenant's money has run out (balance, credit limit or hard budget), or None. Registered in
    apps.core.funds for the apps below billing: object storage suspends the tenant's keys while it is not
    None (docs/storage.md "Funds, suspension and the byte quota")."""
    return refusal(wallet_of(tenant, now))


def must_stop(w: Wallet, *, grace_seconds: int) -> bool:
    """Out of money, or less than `grace_seconds` of it left at the current burn rate."""
    for left in (w.headroom, w.budget_left):
        if left is None:
            continue
        if left <= 0:
            return True
        runway = w.seconds_until(left)
        if runway is not None and runway < grace_seconds:
            return True
    return False


def enforce_limits(*, now: datetime | None = None) -> int:
    """The burn-down loop: stop (never delete) the instances of tenants whose runway has ended. Returns how
    many instances were asked to stop."""
    from apps.instances import services as instance_services
    from apps.instances.models import Instance
    from apps.instances.states import Action

    now = now or timezone.now()
    grace = int(settings.BILLING_STOP_GRACE_SECONDS)
    stopped = 0
    tenant_ids = set(
        Instance.objects.filter(state__in=STOPPABLE).values_list("tenant_id", flat=True).distinct()
    )
    for tenant in Tenant.objects.filter(pk__in=tenant_ids).order_by("pk"):
        w = wallet_of(tenant, now)
        if not must_stop(w, grace_seconds=grace):
            continue
        logger.info("billing: stopping instances of %s (balance %s)", tenant.slug, w.balance)
        for instance in Instance.objects.filter(tenant=tenant, state__in=STOPPABLE).order_by("pk"):
            try:
                instance_services.instance_act(
                    actor=None, instance=instance, action=Action.STOP, reason="insufficient_funds"
                )
            except Exception:  # one instance's trouble must not keep the others running on no money
                logger.exception("billing: could not stop instance %s", instance.pk)
                continue
            stopped += 1
    return stopped


def check_budgets(*, now: datetime | None = None) -> int:
    """Send each budget alert (50, 80, 100 percent of month-to-date spend) once per tenant and month.
    Returns how many alerts were new."""
    now = now or timezone.now()
    month = month_start(now).date()
    sent = 0
    accounts = BillingAccount.objects.filter(monthly_budget__isnull=False).select_related("tenant")
    for account in accounts.order_by("pk"):
        budget = account.monthly_budget
        assert budget is not None
        already = set(
            BudgetAlert.objects.filter(tenant_id=account.tenant_id, month=month).values_list(
                "threshold", flat=True
            )
        )
        if already >= set(THRESHOLDS):
            continue
        spend = wallet_of(account.tenant, now).month_to_date_spend
        for threshold in THRESHOLDS:
            if threshold in already or spend * 100 < budget * threshold:
                continue
            if _alert(account.tenant, month=month, threshold=threshold, spend=spend, budget=budget):
                sent += 1
    return sent


def _alert(tenant: Tenant, *, month: Any, threshold: int, spend: Decimal, budget: Decimal) -> bool:
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                tenant=tenant, month=month, threshold=threshold, spend=spend, budget=budget
            )
            audit_record(
                actor=None,
                action="billing.budget_alert",
                target=alert,
                tenant=tenant,
                metadata={
                    "threshold": threshold,
                    "month": month.isoformat(),
                    "spend": str(spend),
                    "budget": str(budget),
                },
            )
            transaction.on_commit(lambda: _queue_email(alert.pk))
    except IntegrityError:
        return False  # another worker sent this one
    return True


def _queue_email(alert_id: int) -> None:
    from apps.billing.tasks import send_budget_alert_email

    send_budget_alert_email.delay(alert_id)
