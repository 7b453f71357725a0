"""Meters and prices match the product's prices for every metered resource: instances per second, volumes and
object storage per GiB-second at their price per GiB-hour. What Stripe would compute (quantity x
unit_amount_decimal, to the cent) equals the invoice's own lines, and a price change mid-month makes a new
Stripe Price that the usage after it goes to while the usage before keeps the old one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from apps.billing import services as billing_services
from apps.billing.invoices import services
from apps.billing.invoices.models import Invoice
from apps.billing.metering import amount_for
from apps.billing.models import UsageRecord
from apps.billing.stripe import meter_prices, usage_export
from apps.billing.stripe.meter_prices import Rate
from apps.billing.stripe.models import MeterEventOutbox, StripeMeter
from apps.catalog.models import InstanceType
from tests.billing.invoices.helpers import OCTOBER, at, write_usage
from tests.factories import TenantFactory
from tests.support.factories import seed, volume_row

pytestmark = pytest.mark.django_db

NOVEMBER_1 = datetime(2026, 11, 1, tzinfo=UTC)


def cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def storage_rows(
    tenant: Any,
    *,
    resource_type: str,
    resource_id: str,
    meter: str,
    start: datetime,
    seconds: int,
    unit_price: str,
    window: int = 3600,
) -> None:
    """Ledger rows of a volume or bucket as their metering writes them: seconds at size x price per
    GiB-hour."""
    price = Decimal(unit_price)
    offset = 0
    while offset < seconds:
        piece = min(window, seconds - offset)
        lower = start + timedelta(seconds=offset)
        UsageRecord.objects.create(
            id=f"{resource_type}:{resource_id}:{meter}:{int(lower.timestamp())}",
            tenant=tenant,
            resource_type=resource_type,
            resource_id=resource_id,
            meter=meter,
            period=DateTimeTZRange(lower, lower + timedelta(seconds=piece), "[)"),
            quantity_seconds=piece,
            unit_price_per_hour=price,
            amount=amount_for(piece, price),
        )
        offset += piece


def hourly_rows(tenant: Any, *, start: datetime, end: datetime, price: str, resource_id: str) -> None:
    """An instance's rows as metering writes them now: cut at every hour and at the ends given."""
    meter = "instance_seconds:gpu-h100x1"
    lower = start
    while lower < end:
        upper = min(end, lower.replace(minute=0, second=0) + timedelta(hours=1))
        seconds = int((upper - lower).total_seconds())
        UsageRecord.objects.create(
            id=f"instance:{resource_id}:{meter}:{int(lower.timestamp())}",
            tenant=tenant,
            resource_type="instance",
            resource_id=resource_id,
            meter=meter,
            period=DateTimeTZRange(lower, upper, "[)"),
            quantity_seconds=seconds,
            unit_price_per_hour=Decimal(price),
            amount=amount_for(seconds, Decimal(price)),
        )
        lower = upper


def test_unit_amounts_are_12_places_rounded_up_and_stripe_rounds_to_the_cent() -> None:
    h100 = Rate("instance_seconds:gpu-h100x1", "second", Decimal("2.49"))
    assert h100.unit_amount_cents == Decimal("0.069166666667")  # 249 / 3600 = 0.0691666...
    assert h100.key == "instance_seconds:gpu-h100x1@2.4900"
    assert h100.event_name == "gpucloud_instance_seconds_gpu_h100x1_at_2_4900"
    # Exact prices stay exact.
    assert meter_prices.unit_amount_cents(Decimal("3.6000")) == Decimal("0.1")
    # Rounded up, an exact half cent is Stripe's half cent too: 1800 s at 0.01/h is 0.5 cents -> 1.
    assert meter_prices.stripe_amount_cents(1800, meter_prices.unit_amount_cents(Decimal("0.01"))) == 1


def test_storage_is_metered_in_gib_seconds_at_the_price_per_gib_hour(settings) -> None:
    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.0001")
    # A 100 GiB volume at 0.0002 per GiB-hour: the ledger's unit price is 0.0200 per hour.
    rate, units = meter_prices.rate_and_units("volume_gib_hours:ssd", Decimal("0.0200"), Decimal("0.0002"))
    assert (rate, units) == (Rate("volume_gib_hours:ssd", "gib_second", Decimal("0.0002")), 100)
    # 3 started GiB of object storage at the setting.
    rate, units = meter_prices.rate_and_units("object_storage_gib_hours", Decimal("0.0003"))  # type: ignore[misc]
    assert (rate.price, rate.unit, units) == (Decimal("0.0001"), "gib_second", 3)
    assert rate.describe() == "0.0001 per GiB-hour (about 0.073 per GiB-month), billed per GiB-second"
    # A row rated before the setting changed keeps its own price as one unit: the amount stays exact.
    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.0002")
    rate, units = meter_prices.rate_and_units("object_storage_gib_hours", Decimal("0.0003"))  # type: ignore[misc]
    assert (rate.price, units) == (Decimal("0.0003"), 1)
    # Free storage is not exported.
    assert meter_prices.rate_and_units("volume_gib_hours:ssd", Decimal("0"), Decimal("0")) is None


def test_what_stripe_computes_equals_the_invoice_lines_for_every_metered_resource(settings) -> None:
    seed()
    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.0001")
    tenant = TenantFactory(credit=0)
    # Instances: an H100 for 61 h 7 min 13 s at 2.49 and an A100 for 7 h 30 min 9 s at 1.29.
    write_usage(tenant, instance_type="gpu-h100x1", start=at(6, 9), seconds=219_600, price="2.4900")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(13, 14), seconds=433, price="2.4900")
    write_usage(tenant, instance_type="gpu-a100x1", start=at(8, 10), seconds=27_009, price="1.2900")
    # A volume: 100 GiB for 10 days, then resized to 150 GiB for 5 days and 7 s, at 0.0002 per GiB-hour.
    volume = volume_row(tenant, size_gib=150, price_per_gib_hour="0.0002", storage_class="ssd")
    meter = "volume_gib_hours:ssd"
    storage_rows(
        tenant,
        resource_type="volume",
        resource_id=str(volume.pk),
        meter=meter,
        start=at(2),
        seconds=864_000,
        unit_price="0.0200",
    )
    storage_rows(
        tenant,
        resource_type="volume",
        resource_id=str(volume.pk),
        meter=meter,
        start=at(12),
        seconds=432_007,
        unit_price="0.0300",
    )
    # A bucket: 3 started GiB for 20 days in 600 s windows (0.0003 per hour).
    storage_rows(
        tenant,
        resource_type="bucket",
        resource_id=str(uuid.uuid4()),
        meter="object_storage_gib_hours",
        start=at(5),
        seconds=1_728_000,
        unit_price="0.0003",
        window=600,
    )
    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)
    lines = list(invoice.lines.order_by("position"))
    assert len(lines) == 5

    # Per line: its quantity in the meter's unit x the Stripe Price's unit amount, rounded as Stripe does.
    per_rate: dict[str, int] = {}
    for line in lines:
        per_gib = Decimal("0.0002") if line.meter.startswith("volume_gib_hours:") else None
        found = meter_prices.rate_and_units(line.meter, line.unit_price_per_hour, per_gib)
        assert found is not None
        rate, units = found
        quantity = line.quantity_seconds * units
        assert meter_prices.stripe_amount_cents(quantity, rate.unit_amount_cents) == cents(line.amount), line
        per_rate[rate.key] = per_rate.get(rate.key, 0) + quantity
    assert per_rate == {
        "instance_seconds:gpu-a100x1@1.2900": 27_009,
        "instance_seconds:gpu-h100x1@2.4900": 220_033,
        "volume_gib_hours:ssd@0.0002": 100 * 864_000 + 150 * 432_007,  # GiB-seconds
        "object_storage_gib_hours@0.0001": 3 * 1_728_000,
    }

    # The export sends exactly those quantities, to meters whose prices carry those unit amounts.
    month_start, month_end = at(1), NOVEMBER_1
    exported: dict[str, int] = {}
    for q in meter_prices.ledger_quantities(start=month_start, end=month_end):
        exported[q.rate.key] = exported.get(q.rate.key, 0) + q.value
    assert exported == per_rate


def test_the_export_sends_each_rate_to_its_own_meter_and_price(
    stripe_on, settings, sent_meter_events
) -> None:
    seed()
    tenant = TenantFactory(credit=0)
    volume = volume_row(tenant, size_gib=100, price_per_gib_hour="0.0002", storage_class="ssd")
    hour = datetime(2026, 11, 25, 10, tzinfo=UTC)
    storage_rows(
        tenant,
        resource_type="volume",
        resource_id=str(volume.pk),
        meter="volume_gib_hours:ssd",
        start=hour,
        seconds=3600,
        unit_price="0.0200",
    )
    write_usage(tenant, instance_type="gpu-h100x1", start=hour, seconds=1200, price="2.4900")
    usage_export.outbox_fill(now=hour + timedelta(hours=1, minutes=10))
    assert usage_export.outbox_drain(now=hour + timedelta(hours=2)).sent == 2
    rows = {r.meter: r for r in MeterEventOutbox.objects.all()}
    assert (rows["volume_gib_hours:ssd"].unit, rows["volume_gib_hours:ssd"].value) == ("gib_second", 360_000)
    assert rows["instance_seconds:gpu-h100x1"].value == 1200
    meters = {m.meter_key: m for m in StripeMeter.objects.all()}
    assert meters["volume_gib_hours:ssd"].unit_amount_decimal == Decimal("0.000005555556")  # 0.02 c / 3600
    assert meters["volume_gib_hours:ssd"].price_per_unit_hour == Decimal("0.0002")
    assert meters["instance_seconds:gpu-h100x1"].unit_amount_decimal == Decimal("0.069166666667")
    # Stripe's amount for the volume's hour: 360,000 GiB-s x 0.000005555556 = 2.00 cents, as billed.
    assert meter_prices.stripe_amount_cents(360_000, meters["volume_gib_hours:ssd"].unit_amount_decimal) == 2


def test_an_hour_long_row_counts_in_the_hour_it_ends_so_a_late_write_is_not_missed(settings) -> None:
    """Metering writes a row once it has ended: a row from 10:30 to 11:30 is written after 11:30, when the
    10:00 hour may already be exported, so it is exported with the hour it ends in."""
    tenant = TenantFactory(credit=0)
    start = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    write_usage(tenant, instance_type="gpu-h100x1", start=start, seconds=3600, price="2.4900")
    settle = timedelta(seconds=settings.STRIPE_METER_SETTLE_SECONDS)
    assert usage_export.outbox_fill(now=start.replace(minute=0) + timedelta(hours=1) + settle) == 0
    assert usage_export.outbox_fill(now=start.replace(minute=0) + timedelta(hours=2) + settle) == 1
    row = MeterEventOutbox.objects.get()
    assert (row.hour_start, row.value) == (datetime(2026, 11, 25, 11, tzinfo=UTC), 3600)


def test_a_price_change_mid_month_makes_a_new_price_that_later_usage_goes_to(
    stripe_on, settings, django_capture_on_commit_callbacks, sent_meter_events
) -> None:
    seed()
    h100 = InstanceType.objects.get(slug="gpu-h100x1")
    old = h100.price_per_hour
    usage_export.ensure_meters()
    old_rate = Rate("instance_seconds:gpu-h100x1", "second", old)
    assert StripeMeter.objects.filter(meter_key=old_rate.meter_key).count() == 1

    change = datetime(2026, 11, 15, 10, 20, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        billing_services.price_change(
            actor=None, instance_type=h100, price_per_hour=Decimal("1.9900"), effective_from=change
        )
    new_rate = Rate("instance_seconds:gpu-h100x1", "second", Decimal("1.9900"))
    prices = dict(
        StripeMeter.objects.filter(meter_key=old_rate.meter_key).values_list(
            "price_per_unit_hour", "price_id"
        )
    )
    assert set(prices) == {old_rate.price, new_rate.price}  # a new Stripe Price, the old one kept
    assert prices[old_rate.price] != prices[new_rate.price]

    # One instance across the change: rows cut at it, each at the price in force.
    tenant = TenantFactory(credit=0)
    resource = str(uuid.uuid4())
    hourly_rows(tenant, start=change - timedelta(hours=5), end=change, price=str(old), resource_id=resource)
    end = change + timedelta(hours=7, seconds=5)
    hourly_rows(tenant, start=change, end=end, price="1.9900", resource_id=resource)
    settings.STRIPE_METER_LOOKBACK_HOURS = 24
    usage_export.outbox_fill(now=change + timedelta(hours=9))
    usage_export.outbox_drain(now=change + timedelta(hours=9))
    sent = {
        (r.price_per_unit_hour, r.hour_start): r.value
        for r in MeterEventOutbox.objects.filter(tenant=tenant).order_by("hour_start")
    }
    # The hour of the change (10:00) has both: 20 minutes to the old price, 40 to the new one.
    ten = change.replace(minute=0)
    assert sent[(old_rate.price, ten)] == 1200
    assert sent[(new_rate.price, ten)] == 2400
    assert sum(v for (price, _), v in sent.items() if price == old_rate.price) == 5 * 3600
    assert all(hour >= ten for (price, hour) in sent if price == new_rate.price)
    assert MeterEventOutbox.objects.filter(tenant=tenant, sent_at__isnull=True).count() == 0
    assert set(sent_meter_events.identifiers) == set(
        MeterEventOutbox.objects.filter(tenant=tenant).values_list("identifier", flat=True)
    )
    events_to = {
        r.identifier.split(":")[2].split("@")[1] for r in MeterEventOutbox.objects.filter(tenant=tenant)
    }
    assert events_to == {str(old_rate.price), str(new_rate.price)}

    # The invoice has a line per price; Stripe's amounts at each rate equal them.
    invoice: Invoice = services.invoice_close(tenant=tenant, month=change.date().replace(day=1))
    for line in invoice.lines.all():
        found = meter_prices.rate_and_units(line.meter, line.unit_price_per_hour)
        assert found is not None
        rate, units = found
        stripe_meter = StripeMeter.objects.get(meter_key=rate.meter_key, price_per_unit_hour=rate.price)
        assert stripe_meter.unit_amount_decimal is not None
        stripe_cents = meter_prices.stripe_amount_cents(
            line.quantity_seconds * units, stripe_meter.unit_amount_decimal
        )
        assert stripe_cents == cents(line.amount)
    assert {line.unit_price_per_hour for line in invoice.lines.all()} == {old_rate.price, new_rate.price}
