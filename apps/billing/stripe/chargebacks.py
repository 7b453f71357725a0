"""Refunds and disputes of paid top-ups, from Stripe's webhook events: the paid credit is taken back from the
wallet (a CreditReversal, apps/billing/reversals.py) and a prepaid tenant left below zero is suspended for
non-payment (apps/billing/stripe/standing.py).

Level-triggered, like the rest of the webhook: every event re-fetches the charge or dispute and settles each
refund or dispute to what it withdraws now, so a repeated event, a late one or events in any order move the
wallet once per real change.

- A refund withdraws its amount unless it failed or was canceled (a pending refund is money on its way back
  to the customer, so it counts at once; if it fails, the next refund event gives the credit back).
- A dispute withdraws its amount while the funds are withdrawn (needs_response, under_review, lost and the
  appeal states); won gives it back, lost keeps it withdrawn. Inquiries (warning_*) and prevented disputes
  withdraw nothing.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from apps.billing.models import CreditGrant, ReversalCause
from apps.billing.reversals import credit_reversal_settle
from apps.billing.stripe import gateway as gw
from apps.billing.stripe import standing
from apps.billing.stripe.models import CheckoutKind, CheckoutSession, StripeEvent

logger = logging.getLogger(__name__)

ZERO_CENTS = Decimal("0.00")
REFUND_GIVES_NOTHING_BACK = frozenset({"failed", "canceled"})
DISPUTE_WITHDRAWN = frozenset(
    {"needs_response", "under_review", "lost", "appeal_needs_response", "appeal_under_review"}
)


class TopupNotCreditedYet(Exception):
    """A refund or dispute of a top-up whose payment we have not credited yet (its checkout event is still
    on its way): processing fails and the event is retried later (tasks.retry_events)."""


def cents(amount: int) -> Decimal:
    return (Decimal(amount) / 100).quantize(Decimal("0.01"))


def paid_grant_of(client: gw.StripeGateway, payment_intent_id: str | None) -> CreditGrant | None:
    """The paid grant a charge's PaymentIntent credited, or None when the charge is not a top-up of ours
    (an invoice payment, another integration on the account)."""
    if not payment_intent_id:
        return None
    record = CheckoutSession.objects.filter(
        kind=CheckoutKind.TOPUP, payment_intent_id=payment_intent_id
    ).first()
    if record is None:
        # The checkout event that records the PaymentIntent may not have been processed yet: ask Stripe.
        session_id = client.checkout_session_of_payment_intent(payment_intent_id)
        record = (
            CheckoutSession.objects.filter(kind=CheckoutKind.TOPUP, session_id=session_id).first()
            if session_id
            else None
        )
        if record is None:
            logger.info("stripe charge is not a top-up of ours", extra={"payment_intent": payment_intent_id})
            return None
        record.payment_intent_id = payment_intent_id
        record.save(update_fields=["payment_intent_id"])
    grant = CreditGrant.objects.filter(external_id=record.session_id).select_related("tenant").first()
    if grant is None:
        raise TopupNotCreditedYet(f"top-up {record.session_id} is not credited yet; retried later")
    return grant


def _after(grant: CreditGrant, moved: list[Decimal]) -> None:
    """Credit taken back may leave a prepaid tenant below zero (suspended); credit given back may bring a
    tenant suspended for that back to zero or above (reactivated). Nothing moved: nothing to decide."""
    if any(amount > 0 for amount in moved):
        standing.suspend_if_below_zero(tenant=grant.tenant)
    if moved:
        standing.reactivate_if_paid_up(tenant=grant.tenant)


def settle_charge_refunds(client: gw.StripeGateway, charge_id: str, event: StripeEvent) -> None:
    charge = client.retrieve_charge(charge_id)
    grant = paid_grant_of(client, charge.payment_intent_id)
    if grant is None:
        return
    moved = []
    for refund in charge.refunds:
        withdrawn = ZERO_CENTS if refund.status in REFUND_GIVES_NOTHING_BACK else cents(refund.amount)
        reversal = credit_reversal_settle(
            grant=grant,
            cause=ReversalCause.REFUND,
            source_id=refund.id,
            withdrawn=withdrawn,
            reason=f"Refund {refund.id} ({refund.status}) of charge {charge.id}",
            stripe_event_id=event.id,
        )
        if reversal is not None:
            moved.append(reversal.amount)
    _after(grant, moved)


def on_charge_refunded(client: gw.StripeGateway, event: StripeEvent) -> None:
    """charge.refunded: the event's object is the charge."""
    settle_charge_refunds(client, event.object_id, event)


def on_refund_changed(client: gw.StripeGateway, event: StripeEvent) -> None:
    """charge.refund.updated, refund.updated, refund.failed: the object is a refund; its charge is settled
    (a refund that failed gives the credit back)."""
    refund = client.retrieve_refund(event.object_id)
    if refund.charge_id:
        settle_charge_refunds(client, refund.charge_id, event)


def on_dispute(client: gw.StripeGateway, event: StripeEvent) -> None:
    """charge.dispute.created, updated, closed, funds_withdrawn, funds_reinstated: the object is the
    dispute."""
    dispute = client.retrieve_dispute(event.object_id)
    payment_intent_id = dispute.payment_intent_id
    if payment_intent_id is None and dispute.charge_id:
        payment_intent_id = client.retrieve_charge(dispute.charge_id).payment_intent_id
    grant = paid_grant_of(client, payment_intent_id)
    if grant is None:
        return
    withdrawn = cents(dispute.amount) if dispute.status in DISPUTE_WITHDRAWN else ZERO_CENTS
    reversal = credit_reversal_settle(
        grant=grant,
        cause=ReversalCause.DISPUTE,
        source_id=dispute.id,
        withdrawn=withdrawn,
        reason=f"Dispute {dispute.id} ({dispute.status}) of charge {dispute.charge_id or '?'}",
        stripe_event_id=event.id,
    )
    _after(grant, [reversal.amount] if reversal is not None else [])


HANDLERS = {
    "charge.refunded": on_charge_refunded,
    "charge.refund.updated": on_refund_changed,
    "refund.updated": on_refund_changed,
    "refund.failed": on_refund_changed,
    "charge.dispute.created": on_dispute,
    "charge.dispute.updated": on_dispute,
    "charge.dispute.closed": on_dispute,
    "charge.dispute.funds_withdrawn": on_dispute,
    "charge.dispute.funds_reinstated": on_dispute,
}
