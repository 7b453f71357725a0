"""Reads of tag budgets, always through the tenant, and the month-to-date spend of a tag
(docs/billing.md "Tags").

A tag's spend this month is the amount of the tenant's ledger rows that started this month and carry the tag
(as metered), plus the open usage (not in the ledger yet) of the instances and volumes that carry the tag
now: the same open usage the wallet counts, so a running instance moves its tag's spend as continuously as
the tenant's. Read per tenant: one ledger query with one sum per budget over the month's rows (a range scan
of usage_period_start_idx), plus the wallet's open-usage queries and one read of the open resources' tags.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum

from apps.billing.models import TagBudget, TagBudgetAlert, UsageRecord
from apps.billing.selectors import ZERO, _open_usage, _open_volume_usage, month_start
from apps.instances.models import Instance
from apps.storage.models import Volume
from apps.tenants.models import Tenant


def tag_budgets_of(*, tenant: Tenant) -> QuerySet[TagBudget]:
    return TagBudget.objects.filter(tenant=tenant).order_by("key", "value", "pk")


def tag_budget_of(*, tenant: Tenant, budget_id: Any) -> TagBudget | None:
    """One of the tenant's tag budgets, or None (another tenant's, or none by that id)."""
    return tag_budgets_of(tenant=tenant).filter(pk=budget_id).first()


def _carries(tags: dict[str, str], budget: TagBudget) -> bool:
    return tags.get(budget.key) == budget.value


def month_to_date_spend(budgets: Iterable[TagBudget], *, now: datetime) -> dict[Any, Decimal]:
    """Each budget's spend this month (UTC), by budget id. Budgets of several tenants may be asked at once:
    one ledger query per tenant, and the open usage of all of them together."""
    by_tenant: dict[Any, list[TagBudget]] = defaultdict(list)
    for budget in budgets:
        by_tenant[budget.tenant_id].append(budget)
    if not by_tenant:
        return {}
    since = month_start(now)
    spend: dict[Any, Decimal] = {}
    for tenant_id, items in by_tenant.items():
        sums = UsageRecord.objects.filter(tenant_id=tenant_id, period__startswith__gte=since).aggregate(
            **{
                f"b{i}": Sum("amount", filter=Q(tags__contains={budget.key: budget.value}))
                for i, budget in enumerate(items)
            }
        )
        for i, budget in enumerate(items):
            spend[budget.pk] = sums[f"b{i}"] or ZERO
    tenant_ids = list(by_tenant)
    # The wallet's own open usage: instances billed now and volumes still billed, cut and rated as the
    # ledger will be; each counts for the tags its resource carries now (metering will copy those).
    open_instances = _open_usage(tenant_ids, now)
    open_volumes = _open_volume_usage(tenant_ids, now)
    instance_tags = dict(
        Instance.objects.filter(
            pk__in=[o.resource_id for items in open_instances.values() for o in items]
        ).values_list("pk", "tags")
    )
    volume_tags = dict(
        Volume.objects.filter(
            pk__in=[o.resource_id for items in open_volumes.values() for o in items]
        ).values_list("pk", "tags")
    )
    for tenant_id, items in by_tenant.items():
        opened = [(o, instance_tags.get(o.resource_id, {})) for o in open_instances.get(tenant_id, [])]
        opened += [(o, volume_tags.get(o.resource_id, {})) for o in open_volumes.get(tenant_id, [])]
        for usage, tags in opened:
            amount = usage.amount_since(since)
            if not amount:
                continue
            for budget in items:
                if _carries(tags, budget):
                    spend[budget.pk] += amount
    return spend


def alerts_sent(budgets: Iterable[TagBudget], *, now: datetime) -> dict[Any, list[int]]:
    """The thresholds already alerted this month, by budget id (one query)."""
    sent: dict[Any, list[int]] = defaultdict(list)
    rows = TagBudgetAlert.objects.filter(
        tag_budget__in=[b.pk for b in budgets], month=month_start(now).date()
    ).order_by("threshold")
    for budget_id, threshold in rows.values_list("tag_budget_id", "threshold"):
        sent[budget_id].append(threshold)
    return dict(sent)
