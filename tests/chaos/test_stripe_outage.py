"""Drill 4: stripe-mock goes down while the worker drains the meter-event outbox, and comes back. Nothing is
lost and every event reaches Stripe exactly once, counted by a proxy between the worker and stripe-mock
(docs/resilience.md). A stripe-mock of the drill's own (scripts/stripe_mock.sh on another port) is stopped,
so the shared one keeps serving other tests."""

from __future__ import annotations

import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from celery.exceptions import AlwaysEagerIgnored
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.db.models import Sum
from django.utils import timezone

from apps.billing.models import UsageRecord
from apps.billing.stripe.meter_prices import Rate, unit_of
from apps.billing.stripe.models import MeterEventOutbox, StripeCustomer
from apps.billing.stripe.usage_export import hour_floor, outbox_identifier
from config.celery import app
from tests.chaos.outages import CountingProxy, PrivateStripeMock
from tests.chaos.stack import Stack
from tests.factories import TenantFactory
from tests.instances.helpers import seed
from tests.support.processes import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

DOWN_SECONDS = 20
METERS = ("instance_seconds:gpu-h100x1", "instance_seconds:cpu-4x")
TASKS = "apps.billing.stripe.tasks"
PRICE = Decimal("2.4900")


@pytest.fixture
def stripe(tmp_path: Path) -> Iterator[tuple[PrivateStripeMock, CountingProxy]]:
    mock = PrivateStripeMock(tmp_path)
    mock.start()
    proxy = CountingProxy(mock.port).start()
    yield mock, proxy
    proxy.stop()
    mock.stop()


def ledger(tenants: list, hours: list) -> None:
    """Usage in closed hours: two instances per tenant and meter, a few minutes each."""
    for tenant in tenants:
        for meter in METERS:
            for hour in hours:
                for minute, seconds in ((5, 120), (30, 300)):
                    start = hour + timedelta(minutes=minute)
                    resource = str(uuid.uuid4())
                    UsageRecord.objects.create(
                        id=f"instance:{resource}:{meter}:{int(start.timestamp())}",
                        tenant=tenant,
                        resource_type="instance",
                        resource_id=resource,
                        meter=meter,
                        period=DateTimeTZRange(start, start + timedelta(seconds=seconds), "[)"),
                        quantity_seconds=seconds,
                        unit_price_per_hour=PRICE,
                        amount=Decimal("2.49") * seconds / 3600,
                    )


def schedule(stack: Stack, task: str) -> None:
    """What beat does: send the periodic task to the worker (through the drill's own queue; this process's
    eager setting does not apply to a task sent by name)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AlwaysEagerIgnored)
        app.send_task(f"{TASKS}.{task}", queue=stack.queue)


def test_stripe_down_while_the_outbox_drains(
    stack: Stack, stripe: tuple[PrivateStripeMock, CountingProxy]
) -> None:
    mock, proxy = stripe
    seed()  # instance types: the meters get their prices
    tenants = [TenantFactory() for _ in range(3)]
    hours = [hour_floor(timezone.now()) - timedelta(hours=h) for h in (3, 2)]
    ledger(tenants, hours)
    stack.processes.env.update(
        STRIPE_SECRET_KEY="sk_test_123",
        STRIPE_API_BASE=proxy.url,
        STRIPE_TIMEOUT_SECONDS="5",
        STRIPE_OUTBOX_BACKOFF_BASE_SECONDS="1",
        STRIPE_OUTBOX_BACKOFF_MAX_SECONDS="2",
    )
    stack.add_worker().start()
    expected = len(tenants) * len(METERS) * len(hours)

    mock.stop()
    schedule(stack, "outbox_fill")
    wait_for(lambda: MeterEventOutbox.objects.count() == expected, what="the outbox to fill")
    down_until = time.monotonic() + DOWN_SECONDS
    while time.monotonic() < down_until:
        schedule(stack, "outbox_drain")
        time.sleep(1)
    # Down: every row waits, tried and failed, and nothing got through.
    assert not MeterEventOutbox.objects.filter(sent_at__isnull=False).exists()
    assert MeterEventOutbox.objects.filter(attempts__gte=2).count() == expected
    assert all(r.status is None for r in proxy.requests) and proxy.requests

    mock.start()

    def drained() -> bool:
        schedule(stack, "outbox_drain")
        time.sleep(0.5)
        return not MeterEventOutbox.objects.filter(sent_at__isnull=True).exists()

    wait_for(drained, what="the outbox to drain once stripe-mock is back", processes=stack.processes)
    for _ in range(3):  # later runs find nothing more to send
        schedule(stack, "outbox_drain")
        schedule(stack, "outbox_fill")
    time.sleep(5)

    rows = {r.identifier: r for r in MeterEventOutbox.objects.all()}
    assert len(rows) == expected
    sent = [r for r in proxy.requests if r.path == "/v1/billing/meter_events" and r.status == 200]
    assert Counter(r.idempotency_key for r in sent) == Counter(list(rows)), "each event sent exactly once"
    for request in sent:
        row = rows[request.idempotency_key]
        assert request.form["identifier"] == [row.identifier]
        assert request.form["payload[value]"] == [str(row.value)]
        rate = Rate(row.meter, row.unit, row.price_per_unit_hour)  # a Stripe meter per meter and price
        assert request.form["event_name"] == [rate.event_name]
    # Nothing lost: each row carries the ledger's total of its tenant, meter and hour.
    for tenant in tenants:
        for meter in METERS:
            for hour in hours:
                total = UsageRecord.objects.filter(
                    tenant=tenant, meter=meter, period__startswith__gte=hour,
                    period__startswith__lt=hour + timedelta(hours=1),
                ).aggregate(s=Sum("quantity_seconds"))["s"]  # fmt: skip
                rate = Rate(meter, unit_of(meter), PRICE)
                assert rows[outbox_identifier(tenant.pk, rate, hour)].value == total == 420
    assert all(r.last_error == "" and r.attempts >= 2 for r in rows.values())
    customers = Counter(
        r.idempotency_key for r in proxy.requests if r.path == "/v1/customers" and r.status == 200
    )
    assert customers == Counter(f"gpucloud-customer:{t.pk}" for t in tenants)
    assert StripeCustomer.objects.count() == len(tenants)
    print(
        f"\nchaos drill 4 (stripe-mock down {DOWN_SECONDS}s): {len(sent)} events sent once; "
        f"{sum(r.status is None for r in proxy.requests)} requests failed while down"
    )
