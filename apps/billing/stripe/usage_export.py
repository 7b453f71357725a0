"""Usage export to Stripe: one meter and metered price per ledger meter and price (meter_prices.py), the
ledger's hourly totals in the meter's unit written to an outbox in the business database and drained to
Stripe's meter events (Sentry's transactional outbox is the model: nothing is lost while Stripe is down,
nothing is sent twice), and the daily reconciliation of Stripe's totals against the ledger
(docs/billing.md, "Meters and prices")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import customer_for
from apps.billing.stripe.meter_prices import (
    Rate,
    ensure_current_meters,
    ensure_stripe_meter,
    ledger_quantities,
    rate_key,
)
from apps.billing.stripe.models import MeterEventOutbox, StripeCustomer, StripeMeter

logger = logging.getLogger(__name__)


def ensure_meters(*, client: gw.StripeGateway | None = None) -> list[StripeMeter]:
    """A meter and price for each rate in force now (idempotent); others are made on first export."""
    return ensure_current_meters(client=client)


# --- the outbox --------------------------------------------------------------------------------------------


def hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def outbox_identifier(tenant_id: Any, rate: Rate, hour_start: datetime) -> str:
    return f"{tenant_id}:{rate.key}:{int(hour_start.timestamp())}"


def outbox_fill(*, now: datetime | None = None) -> int:
    """Write one outbox row per tenant, rate and closed hour from the ledger rows that end in the hour. An
    hour is closed once it ended more than STRIPE_METER_SETTLE_SECONDS ago (metering has written the rows
    that end in it by then). Idempotent: the identifier is unique and existing rows are kept. Returns how
    many rows were new."""
    now = now or timezone.now()
    # Every hour starting before `cutoff` ended at or before now - settle.
    cutoff = hour_floor(now - timedelta(seconds=settings.STRIPE_METER_SETTLE_SECONDS))
    horizon = cutoff - timedelta(hours=settings.STRIPE_METER_LOOKBACK_HOURS)
    # Hours exported before prices were versioned (their rows have no price) are not sent again.
    legacy = set(
        MeterEventOutbox.objects.filter(
            price_per_unit_hour__isnull=True, hour_start__gte=horizon
        ).values_list("tenant_id", "meter", "hour_start")
    )
    rows = [
        MeterEventOutbox(
            tenant_id=q.tenant_id,
            meter=q.rate.meter_key,
            unit=q.rate.unit,
            price_per_unit_hour=q.rate.price,
            hour_start=q.hour,
            value=q.value,
            identifier=outbox_identifier(q.tenant_id, q.rate, q.hour),
            next_attempt_at=now,
        )
        for q in ledger_quantities(start=horizon, end=cutoff)
        if (q.tenant_id, q.rate.meter_key, q.hour) not in legacy
    ]
    if not rows:
        return 0
    before = MeterEventOutbox.objects.count()
    MeterEventOutbox.objects.bulk_create(rows, ignore_conflicts=True)
    return MeterEventOutbox.objects.count() - before


def backoff_seconds(attempts: int) -> int:
    """Capped exponential backoff after `attempts` failures: base, 2*base, 4*base ... up to the cap."""
    base, cap = settings.STRIPE_OUTBOX_BACKOFF_BASE_SECONDS, settings.STRIPE_OUTBOX_BACKOFF_MAX_SECONDS
    return int(min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0


def outbox_drain(*, now: datetime | None = None, batch: int = 100) -> DrainResult:
    """Send due rows. Rows are locked with SKIP LOCKED, so concurrent drainers never send the same row; a
    failure leaves the row pending with capped exponential backoff; nothing is ever deleted. Without Stripe
    keys nothing is sent and rows wait."""
    result = DrainResult()
    if not gw.is_configured():
        return result
    client = gw.gateway()
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            MeterEventOutbox.objects.select_for_update(skip_locked=True)
            .select_related("tenant")
            .filter(sent_at__isnull=True, next_attempt_at__lte=now, price_per_unit_hour__isnull=False)
            .order_by("next_attempt_at", "pk")[:batch]
        )
        for row in rows:
            try:
                rate = Rate(row.meter, row.unit, row.price_per_unit_hour or Decimal(0))
                meter = ensure_stripe_meter(rate=rate, client=client)
                customer = customer_for(tenant=row.tenant, client=client)
                client.send_meter_event(
                    event_name=meter.event_name,
                    customer_id=customer.customer_id,
                    value=row.value,
                    timestamp=row.hour_start,
                    identifier=row.identifier,
                )
            except gw.StripeUnavailable as exc:
                row.attempts += 1
                row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
                row.last_error = exc.message[:500]
                row.save(update_fields=["attempts", "next_attempt_at", "last_error"])
                result.failed += 1
                continue
            row.attempts += 1
            row.sent_at = timezone.now()
            row.last_error = ""
            row.save(update_fields=["attempts", "sent_at", "last_error"])
            result.sent += 1
    return result


# --- reconciliation ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    tenant_id: str
    rate: str  # <meter key>@<price>
    ledger_value: int  # in the meter's unit
    stripe_value: float


def compare_totals(
    ledger: dict[tuple[str, str], int], stripe_totals: dict[tuple[str, str], float]
) -> list[Difference]:
    """Pure: every (tenant, rate) whose ledger total and Stripe total differ."""
    keys = sorted(set(ledger) | set(stripe_totals))
    return [
        Difference(tenant, rate, ledger.get((tenant, rate), 0), stripe_totals.get((tenant, rate), 0.0))
        for tenant, rate in keys
        if Decimal(ledger.get((tenant, rate), 0)) != Decimal(str(stripe_totals.get((tenant, rate), 0.0)))
    ]


def ledger_totals(*, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """Per (tenant id, rate key), the ledger rows that end in [start, end) in the meter's unit, corrections
    included: exactly what the outbox sends for those hours."""
    totals: dict[tuple[str, str], int] = {}
    for q in ledger_quantities(start=start, end=end):
        key = (str(q.tenant_id), q.rate.key)
        totals[key] = totals.get(key, 0) + q.value
    return totals


def reconcile(*, start: datetime, end: datetime) -> list[Difference]:
    """Compare the ledger's totals for [start, end) (whole, closed hours) with Stripe's meter event
    summaries, per tenant and rate that has been exported, and log each difference. Against stripe-mock
    the summaries are fixtures (the same value for any query)."""
    client = gw.gateway()
    sent = MeterEventOutbox.objects.filter(
        hour_start__gte=start, hour_start__lt=end, sent_at__isnull=False, price_per_unit_hour__isnull=False
    )
    exported = {
        (str(tenant), rate_key(meter, price))
        for tenant, meter, price in sent.values_list("tenant_id", "meter", "price_per_unit_hour").distinct()
    }
    ledger = {key: total for key, total in ledger_totals(start=start, end=end).items() if key in exported}
    customers = {str(t): c for t, c in StripeCustomer.objects.values_list("tenant_id", "customer_id")}
    meters = {
        rate_key(key, price): meter_id
        for key, price, meter_id in StripeMeter.objects.filter(price_per_unit_hour__isnull=False).values_list(
            "meter_key", "price_per_unit_hour", "meter_id"
        )
    }
    stripe_totals: dict[tuple[str, str], float] = {}
    for tenant_id, rate in ledger:
        customer_id = customers.get(tenant_id)
        meter_id = meters.get(rate)
        if customer_id is None or meter_id is None:
            continue  # never sent: the outbox still holds it, nothing to compare
        summaries = client.meter_event_summaries(
            meter_id=meter_id, customer_id=customer_id, start=start, end=end
        )
        stripe_totals[(tenant_id, rate)] = sum(s.aggregated_value for s in summaries)
    differences = compare_totals(ledger, stripe_totals)
    for diff in differences:
        logger.warning(
            "stripe meter totals differ from the ledger",
            extra={
                "tenant_id": diff.tenant_id,
                "rate": diff.rate,
                "ledger_value": diff.ledger_value,
                "stripe_value": diff.stripe_value,
            },
        )
    return differences
