"""Celery tasks of the Stripe integration (scheduled in config/settings/base.py)."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

from celery import shared_task
from django.utils import timezone

from apps.billing.stripe import collection, dunning, events, gateway, meter_prices, usage_export
from apps.billing.stripe.models import StripeEvent

MAX_EVENT_ATTEMPTS = 10


@shared_task(acks_late=True)
def process_event(event_id: str) -> bool:
    return events.webhook_event_process(event_id=event_id)


@shared_task(acks_late=True)
def retry_events() -> int:
    """Events whose processing failed (Stripe unreachable, a bug since fixed) are retried here."""
    stale = timezone.now() - timedelta(minutes=1)
    ids = StripeEvent.objects.filter(
        processed_at__isnull=True, received_at__lte=stale, attempts__lt=MAX_EVENT_ATTEMPTS
    ).values_list("id", flat=True)[:100]
    return sum(1 for event_id in list(ids) if events.webhook_event_process(event_id=event_id))


@shared_task(acks_late=True)
def outbox_fill() -> int:
    return usage_export.outbox_fill()


@shared_task(acks_late=True)
def outbox_drain() -> int:
    return usage_export.outbox_drain().sent


@shared_task(acks_late=True)
def reconcile() -> int:
    """Yesterday (UTC) against Stripe's summaries; differences are logged."""
    if not gateway.is_configured():
        return 0
    end = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return len(usage_export.reconcile(start=end - timedelta(days=1), end=end))


@shared_task(acks_late=True)
def enforce_past_due() -> int:
    return dunning.enforce_past_due()


@shared_task(acks_late=True)
def send_invoices() -> int:
    """Invoices to collect: records for recently finalized invoices that have none, then every pending
    record that is due (queued on commit of each close, and run by beat until all are sent)."""
    collection.collections_sweep()
    return collection.invoices_send().sent


@shared_task(acks_late=True)
def ensure_stripe_price(meter_key: str, price_per_hour: str) -> str:
    """A new price version's Stripe Meter and Price (queued on commit of the version). Best effort: the
    export makes it on first use anyway."""
    if not gateway.is_configured():
        return ""
    rate = meter_prices.Rate(meter_key, meter_prices.unit_of(meter_key), Decimal(price_per_hour))
    try:
        return meter_prices.ensure_stripe_meter(rate=rate).price_id
    except gateway.StripeUnavailable:
        return ""  # logged by the gateway; the first export at this price makes it
