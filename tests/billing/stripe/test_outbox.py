"""Usage export: one outbox row per tenant, rate (meter and price) and closed hour, drained to stripe-mock
with backoff; a Stripe outage loses nothing and a retry never sends an event twice. Reconciliation against
summaries."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from apps.billing.models import UsageRecord
from apps.billing.stripe import usage_export
from apps.billing.stripe.models import MeterEventOutbox, StripeCustomer, StripeMeter
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

H100 = "instance_seconds:gpu-h100x1"
L40S = "instance_seconds:gpu-l40sx1"
H100_RATE = f"{H100}@3.6000"
L40S_RATE = f"{L40S}@3.6000"
HOUR = datetime(2026, 11, 25, 10, tzinfo=UTC)


def usage(tenant, meter: str, start: datetime, seconds: int, resource: str | None = None) -> UsageRecord:
    resource = resource or str(uuid.uuid4())
    return UsageRecord.objects.create(
        id=f"instance:{resource}:{meter}:{int(start.timestamp())}",
        tenant=tenant,
        resource_type="instance",
        resource_id=resource,
        meter=meter,
        period=DateTimeTZRange(start, start + timedelta(seconds=seconds), "[)"),
        quantity_seconds=seconds,
        unit_price_per_hour=Decimal("3.6000"),
        amount=Decimal("0.001") * seconds,
    )


@pytest.fixture
def ledger():
    a, b = TenantFactory(), TenantFactory()
    vm = str(uuid.uuid4())
    usage(a, H100, HOUR, 60, vm)
    usage(a, H100, HOUR + timedelta(minutes=1), 60, vm)
    usage(a, H100, HOUR + timedelta(minutes=59), 60)  # another instance; ends at 11:00, so in the 10:00 hour
    usage(a, L40S, HOUR + timedelta(minutes=5), 30)
    usage(b, H100, HOUR + timedelta(minutes=30), 45)
    usage(a, H100, HOUR + timedelta(hours=1), 60, vm)  # the next hour
    return a, b


def closed_after(hour: datetime, settings) -> datetime:
    return hour + timedelta(hours=1, seconds=settings.STRIPE_METER_SETTLE_SECONDS)


def test_fill_writes_one_row_per_tenant_meter_and_closed_hour(ledger, settings) -> None:
    a, b = ledger
    not_settled = closed_after(HOUR, settings) - timedelta(seconds=1)
    assert usage_export.outbox_fill(now=not_settled) == 0
    assert usage_export.outbox_fill(now=closed_after(HOUR, settings)) == 3
    rows = {(r.tenant_id, r.meter): r for r in MeterEventOutbox.objects.all()}
    epoch = int(HOUR.timestamp())
    assert rows[(a.pk, H100)].value == 180
    assert rows[(a.pk, H100)].identifier == f"{a.pk}:{H100_RATE}:{epoch}"
    assert (rows[(a.pk, H100)].unit, rows[(a.pk, H100)].price_per_unit_hour) == ("second", Decimal("3.6"))
    assert rows[(a.pk, L40S)].value == 30
    assert rows[(b.pk, H100)].value == 45
    assert all(r.hour_start == HOUR and r.sent_at is None for r in rows.values())
    # Idempotent: re-running adds nothing; the next hour appears once it is closed.
    assert usage_export.outbox_fill(now=closed_after(HOUR, settings)) == 0
    assert usage_export.outbox_fill(now=closed_after(HOUR + timedelta(hours=1), settings)) == 1
    assert MeterEventOutbox.objects.count() == 4


def test_backoff_is_exponential_and_capped(settings) -> None:
    settings.STRIPE_OUTBOX_BACKOFF_BASE_SECONDS = 30
    settings.STRIPE_OUTBOX_BACKOFF_MAX_SECONDS = 3600
    assert [usage_export.backoff_seconds(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert usage_export.backoff_seconds(50) == 3600


def test_without_stripe_keys_rows_wait_and_nothing_breaks(ledger, settings, stripe_off) -> None:
    usage_export.outbox_fill(now=closed_after(HOUR, settings))
    assert usage_export.outbox_drain().sent == 0
    assert MeterEventOutbox.objects.filter(sent_at__isnull=True, attempts=0).count() == 3


def test_an_outage_loses_nothing_and_each_event_is_sent_exactly_once(
    ledger, settings, private_stripe_mock, sent_meter_events
) -> None:
    settings.STRIPE_OUTBOX_BACKOFF_BASE_SECONDS = 30
    now = closed_after(HOUR, settings)
    usage_export.outbox_fill(now=now)

    # stripe-mock is down.
    result = usage_export.outbox_drain(now=now)
    assert (result.sent, result.failed) == (0, 3)
    rows = list(MeterEventOutbox.objects.all())
    assert all(r.sent_at is None and r.attempts == 1 for r in rows)
    assert all(r.next_attempt_at == now + timedelta(seconds=30) for r in rows)
    assert all("Stripe did not complete" in r.last_error for r in rows)
    assert usage_export.outbox_drain(now=now + timedelta(seconds=29)).failed == 0  # not due yet: untouched
    later = now + timedelta(seconds=30)
    assert usage_export.outbox_drain(now=later).failed == 3
    assert {r.next_attempt_at for r in MeterEventOutbox.objects.all()} == {later + timedelta(seconds=60)}
    assert sent_meter_events.identifiers == []

    # It is back: every row is sent once, and draining again sends nothing more.
    private_stripe_mock.start()
    result = usage_export.outbox_drain(now=later + timedelta(hours=1))
    assert (result.sent, result.failed) == (3, 0)
    assert usage_export.outbox_drain(now=later + timedelta(hours=2)).sent == 0
    usage_export.outbox_fill(now=closed_after(HOUR, settings))  # refilling the same hour changes nothing
    assert usage_export.outbox_drain(now=later + timedelta(hours=3)).sent == 0
    identifiers = sorted(MeterEventOutbox.objects.values_list("identifier", flat=True))
    assert sorted(sent_meter_events.identifiers) == identifiers
    assert len(set(sent_meter_events.identifiers)) == 3
    assert MeterEventOutbox.objects.filter(sent_at__isnull=False, last_error="").count() == 3
    assert StripeMeter.objects.count() == 2  # the meters were ensured on the way
    assert StripeCustomer.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_drainers_skip_locked_rows(ledger, settings, stripe_on, sent_meter_events) -> None:
    now = closed_after(HOUR, settings)
    usage_export.outbox_fill(now=now)
    locked = threading.Event()
    release = threading.Event()
    first = MeterEventOutbox.objects.order_by("pk").first()
    assert first is not None

    def hold_a_row() -> None:
        try:
            with transaction.atomic():
                MeterEventOutbox.objects.select_for_update().get(pk=first.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_row)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        assert usage_export.outbox_drain(now=now).sent == 2  # the locked row is skipped, not waited for
    finally:
        release.set()
        holder.join()
    assert first.identifier not in sent_meter_events.identifiers
    assert usage_export.outbox_drain(now=now).sent == 1
    assert sorted(sent_meter_events.identifiers) == sorted(
        MeterEventOutbox.objects.values_list("identifier", flat=True)
    )


def test_compare_totals_reports_each_difference() -> None:
    ledger = {("t1", H100): 3600, ("t1", L40S): 60, ("t2", H100): 10}
    stripe = {("t1", H100): 3600.0, ("t1", L40S): 30.0, ("t3", H100): 5.0}
    assert usage_export.compare_totals(ledger, stripe) == [
        usage_export.Difference("t1", L40S, 60, 30.0),
        usage_export.Difference("t2", H100, 10, 0.0),
        usage_export.Difference("t3", H100, 0, 5.0),
    ]


def test_reconcile_compares_ledger_totals_with_stripes_summaries(ledger, settings, stripe_on, caplog) -> None:
    """stripe-mock's summaries are fixtures (aggregated_value 25 for any query), so the real call's shape is
    exercised and a ledger total of 25 is the one that matches."""
    a, b = ledger
    usage_export.outbox_fill(now=closed_after(HOUR, settings))
    usage_export.outbox_drain(now=closed_after(HOUR, settings))
    # A correction after the export: tenant b's 45 s become 25 s in the ledger (a reversing row).
    UsageRecord.objects.create(
        id=f"correction:{b.pk}",
        tenant=b,
        resource_type="instance",
        resource_id="corrected",
        meter=H100,
        period=DateTimeTZRange(HOUR + timedelta(minutes=30), HOUR + timedelta(minutes=31), "[)"),
        quantity_seconds=-20,
        unit_price_per_hour=Decimal("3.6000"),
        amount=Decimal("-0.02"),
        kind="reversal",
    )
    assert usage_export.ledger_totals(start=HOUR, end=HOUR + timedelta(hours=1))[(str(b.pk), H100_RATE)] == 25
    differences = usage_export.reconcile(start=HOUR, end=HOUR + timedelta(hours=1))
    assert {(d.tenant_id, d.rate, d.ledger_value) for d in differences} == {
        (str(a.pk), H100_RATE, 180),
        (str(a.pk), L40S_RATE, 30),
    }
    assert all(d.stripe_value == 25.0 for d in differences)
    assert (
        sum(1 for r in caplog.records if r.getMessage() == "stripe meter totals differ from the ledger") == 2
    )


def test_reconcile_ignores_what_was_not_exported_yet(ledger, settings, private_stripe_mock) -> None:
    usage_export.outbox_fill(now=closed_after(HOUR, settings))
    usage_export.outbox_drain(now=closed_after(HOUR, settings))  # Stripe down: nothing sent
    private_stripe_mock.start()
    assert usage_export.reconcile(start=HOUR, end=HOUR + timedelta(hours=1)) == []


def test_the_periodic_tasks(ledger, settings, stripe_on, sent_meter_events) -> None:
    from django.utils import timezone

    from apps.billing.stripe import tasks

    hours_ago = int((timezone.now() - HOUR).total_seconds() // 3600)
    settings.STRIPE_METER_LOOKBACK_HOURS = hours_ago + 24  # the fixture's hours are in the past
    assert tasks.outbox_fill.delay().get() == 4  # both hours are closed by now
    assert tasks.outbox_drain.delay().get() == 4
    assert len(sent_meter_events.identifiers) == 4
    # The daily reconciliation covers the previous UTC day, as usage_export.reconcile computes it.
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    expected = len(usage_export.reconcile(start=today - timedelta(days=1), end=today))
    assert tasks.reconcile.delay().get() == expected


def test_the_stripe_tasks_are_scheduled_and_registered(settings) -> None:
    from config.celery import app

    scheduled = {
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values() if ".stripe." in entry["task"]
    }
    assert scheduled == {
        f"apps.billing.stripe.tasks.{name}"
        for name in (
            "outbox_fill",
            "outbox_drain",
            "reconcile",
            "retry_events",
            "enforce_past_due",
            "send_invoices",
        )
    }
    app.loader.import_default_modules()
    assert scheduled <= set(app.tasks)
