"""Taking paid credit back (refunds, chargebacks) and giving it back (a dispute won), as movements the wallet
draws down (apps/billing/wallet.py), never by editing or shrinking a grant.

Level-triggered: the caller says how much one source (a Stripe refund or dispute id) withdraws *now*, as
Stripe reports it; `credit_reversal_settle` writes the one movement that brings the source's total there.
A repeated event, an old event processed late, or events of one source in any order therefore move the
wallet exactly once per change of the source's state.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from apps.audit.services import audit_record
from apps.billing.models import CreditGrant, CreditReversal, ReversalCause

ZERO = Decimal("0")
CENTS = Decimal("0.01")


@transaction.atomic
def credit_reversal_settle(
    *,
    grant: CreditGrant,
    cause: str,
    source_id: str,
    withdrawn: Decimal,
    reason: str,
    stripe_event_id: str = "",
) -> CreditReversal | None:
    """Make what `source_id` has taken back from `grant` equal `withdrawn` (0 gives everything back).

    Never takes back more than the grant, counting every other source of it (a charge refunded and then
    disputed was paid once). Returns the movement written, or None when the source is already there.
    """
    if cause not in ReversalCause.values:
        raise ValueError(f"unknown reversal cause {cause!r}")
    if withdrawn < 0 or withdrawn != withdrawn.quantize(CENTS):
        raise ValueError(f"withdrawn must be 0 or more in cents, not {withdrawn}")
    # The grant row is the lock: movements of one grant are decided one at a time.
    # of=("self",): the grant row only, not its tenant (a joined row would be locked FOR UPDATE as well).
    locked = CreditGrant.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=grant.pk)
    movements = CreditReversal.objects.filter(grant=locked)
    of_source = movements.filter(source_id=source_id)
    before = of_source.aggregate(total=Sum("amount"))["total"] or ZERO
    others = movements.exclude(source_id=source_id).aggregate(total=Sum("amount"))["total"] or ZERO
    target = min(withdrawn, max(locked.amount - others, ZERO))
    delta = target - before
    if delta == 0:
        return None
    reversal = CreditReversal.objects.create(
        tenant=locked.tenant,
        grant=locked,
        cause=cause,
        source_id=source_id,
        sequence=of_source.count() + 1,
        amount=delta,
        stripe_event_id=stripe_event_id,
        reason=reason[:300],
    )
    audit_record(
        actor=None,
        action="billing.credit_reversal",
        target=reversal,
        tenant=locked.tenant,
        changes={"withdrawn": {"from": str(before), "to": str(target)}},
        metadata={
            "cause": cause,
            "source_id": source_id,
            "amount": str(delta),
            "grant": str(locked.pk),
            "grant_external_id": locked.external_id or "",
            "stripe_event": stripe_event_id,
            "reason": reversal.reason,
        },
    )
    return reversal
