"""Hard limits enforced by us, from our own ledger: refusing launches, starts and restarts that the wallet
cannot carry for BILLING_LAUNCH_RUNWAY_MINUTES (402 insufficient_funds naming the shortfall), stopping running
instances when the runway ends, and budget alerts at 50, 80 and 100 percent, of the tenant's budget and of
each tag budget (soft: alerts only; docs/billing.md "Tags")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing import stops, tag_budget_selectors
from apps.billing.models import (
    AMOUNT_PLACES,
    BillingAccount,
    BillingMode,
    BudgetAlert,
    TagBudget,
    TagBudgetAlert,
)
from apps.billing.selectors import Wallet, month_start, wallet_of

# Imported for its Celery task: this module is imported at start-up (BillingConfig.ready), so the worker
# knows send_tag_budget_alert_email before the first alert queues it.
from apps.billing.tag_budget_emails import send_tag_budget_alert_email
from apps.core import metrics
from apps.core.errors import PaymentRequired
from apps.instances.models import Instance
from apps.instances.services import STOPPABLE_STATES
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

ZERO = Decimal("0")
THRESHOLDS = (50, 80, 100)


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


@dataclass(frozen=True)
class Runway:
    """What an instance about to run asks of the wallet: `minutes` at the tenant's burn rate with it."""

    minutes: int
    burn_rate_per_hour: Decimal  # the tenant's, including the instance
    required: Decimal  # minutes x burn rate, rounded up to micro-units
    available: Decimal  # the headroom, or the hard budget left when that is smaller
    limited_by: str  # balance (prepaid), credit_limit (postpaid) or budget

    @property
    def shortfall(self) -> Decimal:
        return max(self.required - self.available, ZERO)


def runway_for(w: Wallet, *, price_per_hour: Decimal, instance_id: Any = None, minutes: int) -> Runway:
    """The runway an instance at `price_per_hour` needs. The wallet's burn rate already counts the instances
    it bills now (`burning_instances`); the instance's price is added unless it is one of them (a restart)."""
    counted = instance_id is not None and str(instance_id) in w.burning_instances
    rate = w.burn_rate_per_hour + (ZERO if counted else Decimal(price_per_hour))
    minutes = max(0, int(minutes))
    required = (rate * minutes / 60).quantize(AMOUNT_PLACES, rounding=ROUND_UP)
    available = w.headroom
    limited_by = "credit_limit" if w.mode == BillingMode.POSTPAID else "balance"
    budget_left = w.budget_left
    if budget_left is not None and budget_left < available:
        available, limited_by = budget_left, "budget"
    return Runway(minutes, rate, required, available, limited_by)


_COVERS = {
    "balance": "the prepaid balance covers",
    "credit_limit": "the balance and credit limit cover",
    "budget": "the hard monthly budget has left",
}


def require_funds(
    *, tenant: Tenant, price_per_hour: Decimal, instance_id: Any = None, now: datetime | None = None
) -> None:
    """Called by instance_launch and instance_act(START, RESTART) before admission: refuse (402) unless the
    wallet carries the tenant's burn rate including this instance for BILLING_LAUNCH_RUNWAY_MINUTES.
    `instance_id` is the instance being started or restarted (None for a launch)."""
    from apps.billing.stripe.selectors import launch_block_reason

    w = wallet_of(tenant, now)
    runway = runway_for(
        w,
        price_per_hour=price_per_hour,
        instance_id=instance_id,
        minutes=settings.BILLING_LAUNCH_RUNWAY_MINUTES,
    )
    past_due = launch_block_reason(tenant=tenant)
    message = past_due or refusal(w)
    if message is None and runway.shortfall > 0:
        message = (
            f"Running this instance needs {runway.minutes} minutes of runway: {runway.required} at "
            f"{runway.burn_rate_per_hour}/h (the tenant's burn rate with this instance), but "
            f"{_COVERS[runway.limited_by]} {runway.available}; {runway.shortfall} short. Add credit or stop "
            "other instances to launch or start it."
        )
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
                "runway_minutes": runway.minutes,
                "burn_rate_per_hour": str(runway.burn_rate_per_hour),
                "instance_price_per_hour": str(price_per_hour),
                "required": str(runway.required),
                "available": str(runway.available),
                "shortfall": str(runway.shortfall),
                "limited_by": runway.limited_by,
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
    now = now or timezone.now()
    grace = int(settings.BILLING_STOP_GRACE_SECONDS)
    stopped = 0
    tenant_ids = set(
        Instance.objects.filter(state__in=STOPPABLE_STATES).values_list("tenant_id", flat=True).distinct()
    )
    for tenant in Tenant.objects.filter(pk__in=tenant_ids).order_by("pk"):
        w = wallet_of(tenant, now)
        if not must_stop(w, grace_seconds=grace):
            continue
        logger.info("billing: stopping instances of %s (balance %s)", tenant.slug, w.balance)
        stopping = stops.tenant_instances_stop(tenant=tenant, reason=stops.StopReason.INSUFFICIENT_FUNDS)
        stopped += len(stopping)
    return stopped


def check_budgets(*, now: datetime | None = None) -> int:
    """Send each budget alert (50, 80, 100 percent of month-to-date spend) once per tenant and month, and
    each tag budget's once per budget and month (check_tag_budgets). Returns how many alerts were new."""
    now = now or timezone.now()
    return check_tenant_budgets(now=now) + check_tag_budgets(now=now)


def check_tenant_budgets(*, now: datetime | None = None) -> int:
    """The tenants' own budgets: each alert once per tenant and month."""
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


def check_tag_budgets(*, now: datetime | None = None) -> int:
    """Each tag budget's alerts (50, 80, 100 percent of the tag's month-to-date spend, read by
    tag_budget_selectors.month_to_date_spend), once per budget, month and threshold: a unique TagBudgetAlert
    row guarantees it even with several workers. Soft: nothing is refused or stopped. Returns how many
    alerts were new."""
    now = now or timezone.now()
    month = month_start(now).date()
    budgets = list(TagBudget.objects.select_related("tenant").order_by("tenant_id", "pk"))
    already = set(
        TagBudgetAlert.objects.filter(month=month, tag_budget__in=[b.pk for b in budgets]).values_list(
            "tag_budget_id", "threshold"
        )
    )
    pending = [b for b in budgets if any((b.pk, t) not in already for t in THRESHOLDS)]
    spend = tag_budget_selectors.month_to_date_spend(pending, now=now)
    sent = 0
    for budget in pending:
        for threshold in THRESHOLDS:
            if (budget.pk, threshold) in already or spend[
                budget.pk
            ] * 100 < budget.monthly_amount * threshold:
                continue
            if _tag_alert(budget, month=month, threshold=threshold, spend=spend[budget.pk]):
                sent += 1
    return sent


def _tag_alert(budget: TagBudget, *, month: Any, threshold: int, spend: Decimal) -> bool:
    try:
        with transaction.atomic():
            alert = TagBudgetAlert.objects.create(
                tag_budget=budget, month=month, threshold=threshold, spend=spend, budget=budget.monthly_amount
            )
            audit_record(
                actor=None,
                action="billing.tag_budget_alert",
                target=alert,
                tenant=budget.tenant,
                metadata={
                    "tag_budget": str(budget.pk),
                    "key": budget.key,
                    "value": budget.value,
                    "threshold": threshold,
                    "month": month.isoformat(),
                    "spend": str(spend),
                    "budget": str(budget.monthly_amount),
                },
            )
            transaction.on_commit(lambda: send_tag_budget_alert_email.delay(alert.pk))
    except IntegrityError:
        return False  # another worker sent this one
    return True


def _queue_email(alert_id: int) -> None:
    from apps.billing.tasks import send_budget_alert_email

    send_budget_alert_email.delay(alert_id)
