"""Writes of tag budgets: a tenant's monthly budget for the usage carrying one tag (docs/billing.md "Tags").
Each write is audited; the alerts are sent by limits.check_budgets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.billing.models import TagBudget
from apps.billing.services import _money
from apps.core import tags as core_tags
from apps.core.errors import Conflict
from apps.core.validation import invalid
from apps.tenants.models import Tenant

# Each tag budget is one more sum in the budget check's query of the tenant's month: a bound, not a price.
MAX_TAG_BUDGETS = 100


def _amount(monthly_amount: Any) -> Decimal:
    return _money(monthly_amount, "monthly_amount")


@transaction.atomic
def tag_budget_create(*, actor: Any, tenant: Tenant, key: Any, value: Any, monthly_amount: Any) -> TagBudget:
    """A monthly budget for the tenant's usage tagged key=value (the key read as a tag key: lower case).
    409 tag_budget_exists for a tag that has one; 400 past MAX_TAG_BUDGETS."""
    key = core_tags.normalize_key(key, field="key")
    value = core_tags.check_value(key, value, field="value")
    amount = _amount(monthly_amount)
    # Counted without a lock: two creates racing past the bound overshoot it by one, which costs nothing.
    if TagBudget.objects.filter(tenant=tenant).count() >= MAX_TAG_BUDGETS:
        raise invalid("key", f"At most {MAX_TAG_BUDGETS} tag budgets per tenant; delete one first.")
    try:
        with transaction.atomic():
            budget = TagBudget.objects.create(
                tenant=tenant, key=key, value=value, monthly_amount=amount, created_by=actor
            )
    except IntegrityError as exc:
        raise Conflict(
            f"The tag {key}={value} already has a budget; change its amount instead.",
            code="tag_budget_exists",
            fields={"key": ["This tag already has a budget."]},
        ) from exc
    audit_record(
        actor=actor,
        action="billing.tag_budget_create",
        target=budget,
        tenant=tenant,
        changes={"key": key, "value": value, "monthly_amount": str(amount)},
    )
    return budget


@transaction.atomic
def tag_budget_update(*, actor: Any, budget: TagBudget, monthly_amount: Any) -> TagBudget:
    """A new monthly amount. Alerts already sent this month stay sent (each threshold fires once a month);
    a raised amount can still reach the thresholds not sent yet."""
    amount = _amount(monthly_amount)
    locked = TagBudget.objects.select_for_update().select_related("tenant").get(pk=budget.pk)
    before = locked.monthly_amount
    if before == amount:
        return locked
    locked.monthly_amount = amount
    locked.save(update_fields=["monthly_amount", "updated_at"])
    audit_record(
        actor=actor,
        action="billing.tag_budget_update",
        target=locked,
        tenant=locked.tenant,
        changes={"monthly_amount": {"from": str(before), "to": str(amount)}},
        metadata={"key": locked.key, "value": locked.value},
    )
    return locked


@transaction.atomic
def tag_budget_delete(*, actor: Any, budget: TagBudget) -> None:
    """Delete the budget and its alerts' rows (the audit log keeps that they were sent)."""
    audit_record(
        actor=actor,
        action="billing.tag_budget_delete",
        target=budget,
        tenant=budget.tenant,
        changes={"key": budget.key, "value": budget.value, "monthly_amount": str(budget.monthly_amount)},
    )
    TagBudget.objects.filter(pk=budget.pk).delete()
