"""Stripe's webhook events: stored once when delivered (webhook.py verifies the signature), processed once
by a Celery task from the objects re-fetched from Stripe (never from the payload), dispatched on the event's
type through HANDLERS. Checkout and card set-up are handled here; invoices in dunning.py, refunds and
disputes in chargebacks.py."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.services import credit_grant_create
from apps.billing.stripe import chargebacks, dunning, standing
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import customer_by_id, to_cents
from apps.billing.stripe.models import CheckoutKind, CheckoutSession, StripeCustomer, StripeEvent

logger = logging.getLogger(__name__)


def webhook_event_store(*, event: gw.WebhookEvent) -> bool:
    """Store the event once; queue its processing after commit. Returns False for a duplicate delivery."""
    from apps.billing.stripe import tasks  # tasks import this module

    with transaction.atomic():
        _, created = StripeEvent.objects.get_or_create(
            id=event.id,
            defaults={
                "type": event.type,
                "object_id": event.object_id,
                "livemode": event.livemode,
                "stripe_created": event.created,
            },
        )
        if created:
            transaction.on_commit(lambda: tasks.process_event.delay(event.id))
    return created


def _on_checkout_completed(client: gw.StripeGateway, event: StripeEvent) -> None:
    """checkout.session.completed and checkout.session.async_payment_succeeded: credit a top-up once Stripe,
    re-fetched, says it is paid (a delayed method completes the session unpaid and pays later)."""
    session = client.retrieve_checkout_session(event.object_id)
    record = CheckoutSession.objects.select_related("tenant").filter(session_id=session.id).first()
    if record is None:
        logger.warning("checkout session not opened by us", extra={"session_id": session.id})
        return
    if session.payment_intent_id and record.payment_intent_id != session.payment_intent_id:
        # What a later refund or dispute of this payment is traced back by (apps/billing/stripe/chargebacks).
        record.payment_intent_id = session.payment_intent_id
        record.save(update_fields=["payment_intent_id"])
    if session.status != "complete":
        return
    if record.kind == CheckoutKind.TOPUP:
        if session.payment_status != "paid":
            return  # asynchronous payment methods: checkout.session.async_payment_succeeded comes later
        assert record.amount is not None
        if session.amount_total is not None and session.amount_total != to_cents(record.amount):
            logger.error(
                "checkout amount differs from the top-up opened",
                extra={"session_id": session.id, "amount_total": session.amount_total},
            )
            return
        credit_grant_create(
            tenant=record.tenant,
            kind="paid",
            amount=record.amount,
            reason=f"Top-up paid through Stripe Checkout {session.id}",
            external_id=session.id,
            actor=record.created_by,
        )
        # A tenant suspended because a chargeback left it below zero is back once this covers it.
        standing.reactivate_if_paid_up(tenant=record.tenant)
    else:
        StripeCustomer.objects.filter(tenant=record.tenant).update(
            card_on_file=True, updated_at=timezone.now()
        )
    if record.completed_at is None:
        record.completed_at = timezone.now()
        record.save(update_fields=["completed_at"])


def _on_checkout_async_payment_failed(client: gw.StripeGateway, event: StripeEvent) -> None:
    """A delayed payment (bank debit) of a top-up failed: nothing was credited and nothing is; the failure is
    recorded in the tenant's audit log."""
    session = client.retrieve_checkout_session(event.object_id)
    record = CheckoutSession.objects.select_related("tenant").filter(session_id=session.id).first()
    if record is None or record.kind != CheckoutKind.TOPUP or session.payment_status == "paid":
        return  # not ours, or paid after all (the re-fetched session is the truth)
    audit_record(
        actor=None,
        action="billing.topup_failed",
        target=record,
        tenant=record.tenant,
        metadata={"session_id": session.id, "amount": str(record.amount), "stripe_event": event.id},
    )


def _on_setup_intent_succeeded(client: gw.StripeGateway, event: StripeEvent) -> None:
    intent = client.retrieve_setup_intent(event.object_id)
    customer = customer_by_id(intent.customer_id)
    if customer is not None and intent.status == "succeeded":
        customer.card_on_file = True
        customer.save(update_fields=["card_on_file", "updated_at"])


def _on_subscription_changed(client: gw.StripeGateway, event: StripeEvent) -> None:
    subscription = client.retrieve_subscription(event.object_id)
    customer = customer_by_id(subscription.customer_id)
    if customer is None:
        return
    customer.subscription_id, customer.subscription_status = subscription.id, subscription.status
    customer.save(update_fields=["subscription_id", "subscription_status", "updated_at"])


HANDLERS: dict[str, Callable[[gw.StripeGateway, StripeEvent], None]] = {
    "checkout.session.completed": _on_checkout_completed,
    "checkout.session.async_payment_succeeded": _on_checkout_completed,
    "checkout.session.async_payment_failed": _on_checkout_async_payment_failed,
    "setup_intent.succeeded": _on_setup_intent_succeeded,
    "customer.subscription.updated": _on_subscription_changed,
    "customer.subscription.deleted": _on_subscription_changed,
    **dunning.HANDLERS,  # invoices paid and unpaid
    **chargebacks.HANDLERS,  # refunds and disputes of top-ups
}


def webhook_event_process(*, event_id: str) -> bool:
    """Handle a stored event once: the row is locked, and an event already processed is skipped. A failure
    is recorded on the row (retried by the periodic task) and does not propagate. Returns True if handled
    now."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().filter(pk=event_id).first()
        if event is None or event.processed_at is not None:
            return False
        handler = HANDLERS.get(event.type)
        event.attempts += 1
        try:
            with transaction.atomic():
                if handler is not None:
                    handler(gw.gateway(), event)
        except Exception as exc:
            logger.exception("stripe event processing failed", extra={"stripe_event": event.id})
            event.last_error = f"{type(exc).__name__}: {exc}"[:500]
            event.save(update_fields=["attempts", "last_error"])
            return False
        event.processed_at, event.last_error = timezone.now(), ""
        event.save(update_fields=["attempts", "processed_at", "last_error"])
        return True
