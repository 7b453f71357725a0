"""How much prepaid credit pays for a month's usage, with the wallet's draw-down rules
(apps/billing/wallet.py: soonest-expiring grant first, expired remainders lost, new grants pay earlier debt
first).

The credit available to a month is what the wallet held for it: its balance at the end of the month plus the
month's own usage (= balance at the start + grants during the month - credit that expired unused during it).
An invoice applies at most its subtotal of that, rounded down to cents, never below zero.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db.models import Q, Sum
from django.db.models.functions import Upper

from apps.billing import wallet
from apps.billing.invoices.models import CENTS
from apps.billing.models import CreditGrant, UsageRecord
from apps.billing.selectors import reversals_of

ZERO = Decimal("0")


def wallet_at(*, tenant: Any, at: datetime) -> wallet.Drawdown:
    """The tenant's wallet at `at`, from its grants, the credit reversals made by then (refunds and
    chargebacks) and every ledger row that ended by then. Usage counts at
    the end of its period; rows are summed per bucket between grant arrivals and expiries (wallet.buckets),
    which gives the same result as drawing them down row by row, in one query."""
    grants = [
        wallet.Grant(key=str(g.pk), amount=g.amount, granted_at=g.created_at, expires_at=g.expires_at)
        for g in CreditGrant.objects.filter(tenant=tenant, created_at__lte=at).order_by("created_at", "pk")
    ]
    reversals = reversals_of([tenant.pk], until=at).get(tenant.pk, [])
    boundaries = (
        [g.granted_at for g in grants]
        + [g.expires_at for g in grants if g.expires_at is not None]
        + [r.at for r in reversals]
    )
    rows = UsageRecord.objects.filter(tenant=tenant).annotate(ended=Upper("period")).filter(ended__lte=at)
    buckets = wallet.buckets(boundaries) or [(None, None, False, at)]
    sums: dict[str, Any] = {}
    for index, (lower, upper, exact, _) in enumerate(buckets):
        if exact:
            where = Q(ended=lower)
        else:
            where = Q()
            if lower is not None:
                where &= Q(ended__gt=lower)
            if upper is not None:
                where &= Q(ended__lt=upper)
        sums[f"b{index}"] = Sum("amount", filter=where)
    totals = rows.aggregate(**sums)
    usage = [
        wallet.Usage(at=rep, amount=totals[f"b{index}"])
        for index, (_, _, _, rep) in enumerate(buckets)
        if totals[f"b{index}"]
    ]
    return wallet.draw_down(grants, usage, now=at, reversals=reversals)


def credits_for_month(
    *, tenant: Any, period_end: datetime, month_usage: Decimal, subtotal: Decimal
) -> Decimal:
    held = wallet_at(tenant=tenant, at=period_end).balance + month_usage
    applicable = min(subtotal, max(held, ZERO))
    return applicable.quantize(CENTS, rounding=ROUND_DOWN)
