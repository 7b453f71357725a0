"""Usage export to Stripe: one meter and metered price per instance type, the ledger's hourly totals written
to an outbox in the business database and drained to Stripe's meter events (Sentry's transactional outbox is
the model: nothing is lost while Stripe is down, nothing is sent twice), and the daily reconciliation of
Stripe's totals against the ledger (docs/billing.md, "Usage export to Stripe")."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, F, Func, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from apps.billing.models import UsageRecord
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import currency, customer_for
from apps.billing.stripe.models import MeterEventOutbox, StripeCustomer, StripeMeter
from apps.catalog.models import InstanceType

logger = logging.getLogger(__name__)


# --- meters ------------------------------------------------------------------------------------------------


def event_name_for(meter_key: str) -> str:
    return "gpucloud_" + "".join(c if c.isalnum() else "_" for c in meter_key)


def ensure_meter(*, meter_key: str, client: gw.StripeGateway | None = None) -> StripeMeter:
    existing = StripeMeter.objects.filter(meter_key=meter_key).first()
    if existing is not None:
        return existing
    client = client or gw.gateway()
    slug = meter_key.split(":", 1)[1] if ":" in meter_key else meter_key
    itype = InstanceType.objects.filter(slug=slug).first()
    per_hour = itype.price_per_hour if itype is not None else Decimal(0)
    # Cents per second, as Stripe's unit_amount_decimal allows (up to 12 decimal places).
    per_second_cents = (Decimal(per_hour) * 100 / Decimal(3600)).quantize(Decimal("0.000000000001"))
    meter = client.create_meter_with_price(
        meter_key=meter_key,
        event_name=event_name_for(meter_key),
        display_name=f"gpucloud {meter_key}",
        currency=currency(),
        unit_amount_cents=per_second_cents,
    )
    try:
        with transaction.atomic():
            record, _ = StripeMeter.objects.get_or_create(
                meter_key=meter_key,
                defaults={"event_name": meter.event_name, "meter_id": meter.id, "price_id": meter.price_id},
            )
    except IntegrityError:
        record = StripeMeter.objects.get(meter_key=meter_key)
    return record


def ensure_meters(*, client: gw.StripeGateway | None = None) -> list[StripeMeter]:
    """One meter and one metered price per instance type's meter key (idempotent)."""
    client = client or gw.gateway()
    keys = [f"instance_seconds:{slug}" for slug in InstanceType.objects.values_list("slug", flat=True)]
    return [ensure_meter(meter_key=key, client=client) for key in keys]


# --- the outbox --------------------------------------------------------------------------------------------


class _Lower(Func):
    function = "lower"
    output_field = DateTimeField()


def hour_floor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def outbox_identifier(tenant_id: Any, meter: str, hour_start: datetime) -> str:
    return f"{tenant_id}:{meter}:{int(hour_start.timestamp())}"


def outbox_fill(*, now: datetime | None = None) -> int:
    """Write one outbox row per tenant, meter and closed hour from the ledger. An hour is closed once it
    ended more than STRIPE_METER_SETTLE_SECONDS ago (the metering task has written its last window by then).
    Idempotent: the identifier is unique and existing rows are kept. Returns how many rows were new."""
    now = now or timezone.now()
    # Every hour starting before `cutoff` ended at or before now - settle.
    cutoff = hour_floor(now - timedelta(seconds=settings.STRIPE_METER_SETTLE_SECONDS))
    horizon = cutoff - timedelta(hours=settings.STRIPE_METER_LOOKBACK_HOURS)
    totals = (
        UsageRecord.objects.annotate(start=_Lower(F("period")))
        .filter(start__gte=horizon, start__lt=cutoff)
        .annotate(hour=TruncHour("start", tzinfo=UTC))
        .values("tenant_id", "meter", "hour")
        .annotate(seconds=Sum("quantity_seconds"))
        .order_by()
    )
    rows = [
        MeterEventOutbox(
            tenant_id=row["tenant_id"],
            meter=row["meter"],
            hour_start=row["hour"],
            value=row["seconds"],
            identifier=outbox_identifier(row["tenant_id"], row["meter"], row["hour"]),
            next_attempt_at=now,
        )
        for row in totals
        if row["seconds"] > 0
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
            .filter(sent_at__isnull=True, next_attempt_at__lte=now)
            .order_by("next_attempt_at", "pk")[:batch]
        )
        for row in rows:
            try:
                meter = ensure_meter(meter_key=row.meter, client=client)
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
    meter: str
    ledger_seconds: int
    stripe_value: float


def compare_totals(
    ledger: dict[tuple[str, str], int], stripe_totals: dict[tuple[str, str], float]
) -> list[Difference]:
    """Pure: every (tenant, meter) whose ledger total and Stripe total differ."""
    keys = sorted(set(ledger) | set(stripe_totals))
    return [
        Difference(tenant, meter, ledger.get((tenant, meter), 0), stripe_totals.get((tenant, meter), 0.0))
        for tenant, meter in keys
        if Decimal(ledger.get((tenant, meter), 0)) != Decimal(str(stripe_totals.get((tenant, meter), 0.0)))
    ]


def ledger_totals(*, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """Seconds per (tenant id, meter) of ledger rows starting in [start, end), corrections included."""
    rows = (
        UsageRecord.objects.annotate(start=_Lower(F("period")))
        .filter(start__gte=start, start__lt=end)
        .values("tenant_id", "meter")
        .annotate(total=Sum("quantity_seconds"))
        .order_by()
    )
    return {(str(row["tenant_id"]), row["meter"]): int(row["total"]) for row in rows}


def reconcile(*, start: datetime, end: datetime) -> list[Difference]:
    """Compare the ledger's totals for [start, end) (whole, closed hours) with Stripe's meter event
    summaries, per tenant and meter that has been exported, and log each difference. Against stripe-mock
    the summaries are fixtures (the same value for any query)."""
    client = gw.gateway()
    sent = MeterEventOutbox.objects.filter(hour_start__gte=start, hour_start__lt=end, sent_at__isnull=False)
    exported = {(str(tenant), meter) for tenant, meter in sent.values_list("tenant_id", "meter").distinct()}
    ledger = {key: total for key, total in ledger_totals(start=start, end=end).items() if key in exported}
    customers = {str(t): c for t, c in StripeCustomer.objects.values_list("tenant_id", "customer_id")}
    meters = dict(StripeMeter.objects.values_list("meter_key", "meter_id"))
    stripe_totals: dict[tuple[str, str], float] = {}
    for tenant_id, meter in ledger:
        customer_id = customers.get(tenant_id)
        meter_id = meters.get(meter)
        if customer_id is None or meter_id is None:
            continue  # never sent: the outbox still holds it, nothing to compare
        summaries = client.meter_event_summaries(
            meter_id=meter_id, customer_id=customer_id, start=start, end=end
        )
        stripe_totals[(tenant_id, meter)] = sum(s.aggregated_value for s in summaries)
    differences = compare_totals(ledger, stripe_totals)
    for diff in differences:
        logger.warning(
            "stripe meter totals differ from the ledger",
            extra={
                "tenant_id": diff.tenant_id,
                "meter": diff.meter,
                "ledger_seconds": diff.ledger_seconds,
                "stripe_value": diff.stripe_value,
            },
        )
    return differences
