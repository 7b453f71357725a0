"""Stripe flows: customers, Checkout (card set-up and top-ups), the portal, usage export through the outbox,
reconciliation, and webhook events (stored once, processed asynchronously from re-fetched objects).

Only gateway.py talks to Stripe; this module decides what to ask and what to record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, F, Func, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from apps.audit.services import audit_record
from apps.billing.models import UsageRecord
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.models import (
    BillingStatus,
    CheckoutKind,
    CheckoutSession,
    MeterEventOutbox,
    StripeCustomer,
    StripeEvent,
    StripeMeter,
)
from apps.core.errors import InvalidInput
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

PAST_DUE_REASON = "Suspended for non-payment: an invoice is past due."
PAST_DUE_STOP_REASON = "payment_past_due"  # what each instance stopped for it records
CENTS = Decimal("0.01")


# --- customers, checkout, portal ---------------------------------------------------------------------------


def customer_for(*, tenant: Tenant, client: gw.StripeGateway | None = None) -> StripeCustomer:
    """The tenant's Stripe Customer, created on first use. The Idempotency-Key is derived from the tenant, so
    concurrent or retried calls (within Stripe's 24 h key window) create one customer; the unique
    OneToOne keeps one row."""
    existing = StripeCustomer.objects.filter(tenant=tenant).first()
    if existing is not None:
        return existing
    client = client or gw.gateway()
    owner_email = (
        tenant.memberships.filter(role="owner")
        .order_by("created_at")
        .values_list("user__email", flat=True)
        .first()
    )
    customer = client.create_customer(
        tenant_id=str(tenant.pk),
        name=tenant.name,
        email=owner_email,
        idempotency_key=f"gpucloud-customer:{tenant.pk}",
    )
    try:
        with transaction.atomic():
            record, _ = StripeCustomer.objects.get_or_create(
                tenant=tenant, defaults={"customer_id": customer.id}
            )
    except IntegrityError:
        record = StripeCustomer.objects.get(tenant=tenant)
    return record


def parse_topup_amount(raw: Any) -> Decimal:
    """The amount of a top-up in the account currency: 2 decimal places, within the configured bounds."""
    try:
        amount = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        amount = Decimal("NaN")
    if not amount.is_finite() or amount != amount.quantize(CENTS):
        raise InvalidInput(
            "amount: must be a decimal number with at most 2 places.",
            fields={"amount": ['Must be a decimal number with at most 2 places, e.g. "50.00".']},
        )
    low, high = Decimal(str(settings.STRIPE_TOPUP_MIN)), Decimal(str(settings.STRIPE_TOPUP_MAX))
    if not low <= amount <= high:
        raise InvalidInput(
            f"amount: must be between {low} and {high}.",
            fields={"amount": [f"Must be between {low} and {high}."]},
        )
    return amount


def _currency() -> str:
    return str(settings.STRIPE_CURRENCY or "usd")


def to_cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _console_url(tenant: Tenant, suffix: str) -> str:
    return f"{str(settings.SITE_URL).rstrip('/')}/t/{tenant.slug}/billing/{suffix}"


@dataclass(frozen=True)
class CheckoutOpened:
    record: CheckoutSession
    url: str


def checkout_topup_create(*, actor: Any, tenant: Tenant, amount: Any) -> CheckoutOpened:
    """Open a Checkout Session (mode=payment) for a top-up. The credit is granted when Stripe reports the
    session paid (checkout.session.completed), never here."""
    value = parse_topup_amount(amount)
    client = gw.gateway()
    customer = customer_for(tenant=tenant, client=client)
    session = client.create_payment_checkout(
        customer_id=customer.customer_id,
        currency=_currency(),
        amount_cents=to_cents(value),
        product_name=f"gpucloud credit for {tenant.slug}",
        success_url=_console_url(tenant, "?topup=success"),
        cancel_url=_console_url(tenant, "?topup=cancelled"),
        tenant_id=str(tenant.pk),
    )
    with transaction.atomic():
        record = CheckoutSession.objects.create(
            session_id=session.id, tenant=tenant, kind=CheckoutKind.TOPUP, amount=value, created_by=actor
        )
        audit_record(
            actor=actor,
            action="billing.topup_checkout",
            target=record,
            tenant=tenant,
            metadata={"amount": str(value), "session_id": session.id},
        )
    return CheckoutOpened(record=record, url=session.url or "")


def checkout_card_setup_create(*, actor: Any, tenant: Tenant) -> CheckoutOpened:
    client = gw.gateway()
    customer = customer_for(tenant=tenant, client=client)
    session = client.create_setup_checkout(
        customer_id=customer.customer_id,
        currency=_currency(),
        success_url=_console_url(tenant, "?card=success"),
        cancel_url=_console_url(tenant, "?card=cancelled"),
        tenant_id=str(tenant.pk),
    )
    with transaction.atomic():
        record = CheckoutSession.objects.create(
            session_id=session.id, tenant=tenant, kind=CheckoutKind.CARD_SETUP, created_by=actor
        )
        audit_record(actor=actor, action="billing.card_setup_checkout", target=record, tenant=tenant)
    return CheckoutOpened(record=record, url=session.url or "")


def portal_session_create(*, actor: Any, tenant: Tenant) -> str:
    client = gw.gateway()
    customer = customer_for(tenant=tenant, client=client)
    return client.create_portal_session(
        customer_id=customer.customer_id, return_url=_console_url(tenant, "")
    ).url


# --- meters ------------------------------------------------------------------------------------------------


def event_name_for(meter_key: str) -> str:
    return "gpucloud_" + "".join(c if c.isalnum() else "_" for c in meter_key)


def ensure_meter(*, meter_key: str, client: gw.StripeGateway | None = None) -> StripeMeter:
    existing = StripeMeter.objects.filter(meter_key=meter_key).first()
    if existing is not None:
        return existing
    from apps.catalog.models import InstanceType

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
        currency=_currency(),
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
    from apps.catalog.models import InstanceType

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


# --- webhooks ----------------------------------------------------------------------------------------------


def webhook_event_store(*, event: gw.WebhookEvent) -> bool:
    """Store the event once; queue its processing after commit. Returns False for a duplicate delivery."""
    from apps.billing.stripe import tasks

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


def _tenant_of_customer(customer_id: str | None) -> StripeCustomer | None:
    if not customer_id:
        return None
    return StripeCustomer.objects.select_related("tenant").filter(customer_id=customer_id).first()


def _on_checkout_completed(client: gw.StripeGateway, event: StripeEvent) -> None:
    from apps.billing.services import credit_grant_create

    session = client.retrieve_checkout_session(event.object_id)
    record = CheckoutSession.objects.select_related("tenant").filter(session_id=session.id).first()
    if record is None:
        logger.warning("checkout session not opened by us", extra={"session_id": session.id})
        return
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
    else:
        StripeCustomer.objects.filter(tenant=record.tenant).update(
            card_on_file=True, updated_at=timezone.now()
        )
    if record.completed_at is None:
        record.completed_at = timezone.now()
        record.save(update_fields=["completed_at"])


def _on_setup_intent_succeeded(client: gw.StripeGateway, event: StripeEvent) -> None:
    intent = client.retrieve_setup_intent(event.object_id)
    customer = _tenant_of_customer(intent.customer_id)
    if customer is not None and intent.status == "succeeded":
        customer.card_on_file = True
        customer.save(update_fields=["card_on_file", "updated_at"])


def _on_invoice_paid(client: gw.StripeGateway, event: StripeEvent) -> None:
    from apps.tenants.services import tenant_reactivate

    invoice = client.retrieve_invoice(event.object_id)
    customer = _tenant_of_customer(invoice.customer_id)
    if customer is None or invoice.status != "paid":
        return
    was = customer.billing_status
    customer.billing_status, customer.past_due_since = BillingStatus.ACTIVE, None
    customer.save(update_fields=["billing_status", "past_due_since", "updated_at"])
    tenant = customer.tenant
    if tenant.status == TenantStatus.SUSPENDED and tenant.status_reason == PAST_DUE_REASON:
        tenant_reactivate(actor=None, tenant=tenant)
    if was != BillingStatus.ACTIVE:
        audit_record(
            actor=None,
            action="billing.payment_restored",
            target=tenant,
            tenant=tenant,
            changes={"billing_status": {"from": was, "to": BillingStatus.ACTIVE}},
            metadata={"invoice": invoice.id},
        )


def _on_invoice_payment_failed(client: gw.StripeGateway, event: StripeEvent) -> None:
    invoice = client.retrieve_invoice(event.object_id)
    customer = _tenant_of_customer(invoice.customer_id)
    if customer is None or invoice.status == "paid":
        return  # delivered after a later success: the re-fetched invoice says it is paid
    if customer.billing_status == BillingStatus.ACTIVE:
        customer.billing_status, customer.past_due_since = BillingStatus.PAST_DUE, timezone.now()
        customer.save(update_fields=["billing_status", "past_due_since", "updated_at"])
        audit_record(
            actor=None,
            action="billing.past_due",
            target=customer.tenant,
            tenant=customer.tenant,
            changes={"billing_status": {"from": BillingStatus.ACTIVE, "to": BillingStatus.PAST_DUE}},
            metadata={"invoice": invoice.id},
        )


def _on_subscription_changed(client: gw.StripeGateway, event: StripeEvent) -> None:
    subscription = client.retrieve_subscription(event.object_id)
    customer = _tenant_of_customer(subscription.customer_id)
    if customer is None:
        return
    customer.subscription_id, customer.subscription_status = subscription.id, subscription.status
    customer.save(update_fields=["subscription_id", "subscription_status", "updated_at"])


HANDLERS: dict[str, Callable[[gw.StripeGateway, StripeEvent], None]] = {
    "checkout.session.completed": _on_checkout_completed,
    "setup_intent.succeeded": _on_setup_intent_succeeded,
    "invoice.paid": _on_invoice_paid,
    "invoice.payment_failed": _on_invoice_payment_failed,
    "customer.subscription.updated": _on_subscription_changed,
    "customer.subscription.deleted": _on_subscription_changed,
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


# --- past due ----------------------------------------------------------------------------------------------


def enforce_past_due(*, now: datetime | None = None) -> int:
    """Suspend tenants past due for longer than the grace and stop their instances (stopped, never
    deleted). Returns how many tenants were suspended."""
    from apps.instances.services import instances_stop_all
    from apps.tenants.services import tenant_suspend

    now = now or timezone.now()
    deadline = now - timedelta(hours=settings.BILLING_PAST_DUE_GRACE_HOURS)
    suspended = 0
    due = StripeCustomer.objects.select_related("tenant").filter(
        billing_status=BillingStatus.PAST_DUE, past_due_since__lte=deadline
    )
    for customer in due:
        with transaction.atomic():
            tenant = customer.tenant
            if tenant.status == TenantStatus.ACTIVE:
                # The suspension stops its instances (apps.instances handles tenant_suspended).
                tenant_suspend(
                    actor=None, tenant=tenant, reason=PAST_DUE_REASON, stop_reason=PAST_DUE_STOP_REASON
                )
            else:
                # Already suspended by staff: anything still running stops all the same.
                instances_stop_all(tenant=tenant, actor=None, reason=PAST_DUE_STOP_REASON)
            customer.billing_status = BillingStatus.SUSPENDED
            customer.save(update_fields=["billing_status", "updated_at"])
            suspended += 1
    return suspended
