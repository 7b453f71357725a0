"""How much prepaid credit pays for a month's usage, with the wallet's draw-down rules
(apps/billing/wallet.py: soonest-expiring grant first, expired remainders lost, new grants pay earlier debt
first).

The credit available to a month is what the wallet held for it: its balance at the end of the month plus the
month's own usage (= balance at the start + grants during the month - credit that expired unused during it).
An invoice applies at most its subtotal of that, rounded down to cents, never below zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
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


# --- The close: the wallet at the end of the month from the previous close's snapshot ------------------

TICK = timedelta(microseconds=1)


def thresholds(points: list[datetime]) -> list[datetime]:
    """The array for PostgreSQL's width_bucket(upper(period), array) that sorts ledger rows into the
    buckets of wallet.buckets: for each boundary p, [p, p + 1 microsecond), so a row ending exactly at p has
    a bucket of its own (timestamps have microsecond resolution) and the rows strictly between two
    boundaries share one. `points` are sorted and distinct."""
    return [moment for point in points for moment in (point, point + TICK)]


def bucket_at(points: list[datetime], index: int) -> datetime:
    """The instant that stands for bucket `index` of width_bucket(end, thresholds(points)) in the
    draw-down, ordered against every boundary exactly like the bucket's rows (as in wallet.buckets)."""
    if index == 0:
        return points[0] - TICK
    if index % 2 == 1:
        return points[(index - 1) // 2]
    k = index // 2
    if k == len(points):
        return points[-1] + TICK
    low, high = points[k - 1], points[k]
    return low + (high - low) // 2


@dataclass
class WalletInputs:
    """What the draw-down of one tenant up to the end of the closed month needs: from `start` (the previous
    close's snapshot) the later events only, or everything (start None)."""

    start: wallet.State | None
    grants: list[wallet.Grant] = field(default_factory=list)
    reversals: list[wallet.Reversal] = field(default_factory=list)
    usage: list[wallet.Usage] = field(default_factory=list)


@dataclass(frozen=True)
class Settlement:
    """How an invoice is paid: `credits_applied` of prepaid credit, `returned` (usage that was reversed
    after credit had paid for it: the wallet already has it back, so the invoice only records it) and
    `carried_out`, a negative rest owed back in cash and taken off the tenant's next invoice."""

    credits_applied: Decimal
    returned: Decimal
    carried_out: Decimal


def settle(*, billed: Decimal, exact: Decimal, carried_in: Decimal, balance: Decimal) -> Settlement:
    """`billed`: the invoice's usage and adjustment lines (cents, may be negative); `exact`: the same usage
    at the ledger's precision; `carried_in`: credit carried from the previous invoice; `balance`: the
    wallet at the end of the month.

    Credit that served the invoice's usage is what the wallet held for it (the balance at the end plus the
    usage it drew), at most the usage billed, rounded down to cents, never below zero: the rule of
    credits_for_month. A negative `billed` (late reversals larger than everything else) was either paid
    with credit, which the wallet has already taken back (a negative ledger row is credited back, or pays
    debt), or in cash: the part the wallet's positive balance covers is `returned`, the rest is owed back
    and carried. The invoice's total (`billed + returned - credits_applied - carried_in + carried_out`) is
    therefore never negative, and credits stay within the subtotal."""
    credits = ZERO
    returned = ZERO
    if billed >= 0:
        credits = min(billed, max(balance + exact, ZERO)).quantize(CENTS, rounding=ROUND_DOWN)
    else:
        returned = min(-billed, max(balance, ZERO)).quantize(CENTS, rounding=ROUND_DOWN)
    due = billed + returned - credits - carried_in
    return Settlement(credits_applied=credits, returned=returned, carried_out=-due if due < 0 else ZERO)


def close_state(inputs: WalletInputs, *, until: datetime) -> wallet.State:
    return wallet.replay(
        inputs.grants, inputs.usage, now=until, reversals=inputs.reversals, start=inputs.start
    )
