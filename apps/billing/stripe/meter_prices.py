"""Which Stripe meter and price a ledger row's usage goes to, and how much of the meter's unit it is.

The product prices instances per hour and storage per GiB-hour; the ledger bills exact seconds at a unit
price per hour, which for storage is size x the price per GiB-hour (apps/billing/volume_metering.py,
apps/billing/bucket_metering.py). Stripe gets each in the unit the product prices it by:

- `instance_seconds:<type>`: seconds, at price per hour / 3600 per second;
- `volume_gib_hours:<class>`: GiB-seconds (seconds x size), at the volume's own frozen price per GiB-hour
  / 3600 per GiB-second;
- `object_storage_gib_hours`: GiB-seconds (seconds x started GiB), at OBJECT_STORAGE_PRICE_PER_GIB_HOUR
  / 3600 per GiB-second.

A *rate* is a meter key at one price per unit-hour. Each rate has its own Stripe Meter and Price
(StripeMeter): a new price (a PriceVersion, another price per GiB-hour) is a new rate, so usage after the
change is sent to the new one and usage before it stays with the old one. Meter events cannot name a price
and every price on a meter bills all its events, hence a meter per price rather than prices sharing one.

Stripe computes an amount as quantity x `unit_amount_decimal`, rounded to the cent. The unit amount is the
price per hour x 100 / 3600 cents, which has no finite decimal form for most prices (3600 has the factor 9),
so it is sent with Stripe's 12 places, rounded *up*: Stripe's figure is then never below the exact amount
and exceeds it by at most quantity x 1e-12 cents, which gives our half-up cents for quantities up to about
2.7 million units (a month of one instance) and almost always beyond (tests/billing/stripe/test_meter_prices
.py). Invoices are collected with our own amounts (collection.py), so this never moves money.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, CharField, DateTimeField, ExpressionWrapper, F, Sum, Value, When
from django.db.models.functions import Lower, TruncHour, Upper

from apps.billing import bucket_metering, volume_metering
from apps.billing.models import UsageRecord
from apps.billing.stripe import gateway as gw
from apps.billing.stripe.customers import currency
from apps.billing.stripe.models import MeterUnit, StripeMeter
from apps.catalog.models import InstanceType
from apps.storage.models import Volume

logger = logging.getLogger(__name__)

INSTANCE_PREFIX = "instance_seconds:"
VOLUME_PREFIX = volume_metering.METER_PREFIX
OBJECT_STORAGE = bucket_metering.METER
PRICE_PLACES = Decimal("0.0001")
UNIT_AMOUNT_PLACES = Decimal("0.000000000001")  # Stripe's unit_amount_decimal: at most 12 places
HOURS_PER_MONTH = 730  # only to show a GiB-month equivalent in Stripe's dashboard
# Ledger rows are at most an hour long (cut at windows, state and price changes); the scan for the rows
# that end in an hour starts this much earlier so that it stays on the index of period starts.
ROW_SCAN_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class Rate:
    """A ledger meter at one price per unit-hour: one Stripe Meter and one Stripe Price."""

    meter_key: str
    unit: str  # MeterUnit
    price: Decimal  # per unit-hour: per hour, or per GiB-hour; 4 places

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", Decimal(self.price).quantize(PRICE_PLACES))

    @property
    def key(self) -> str:
        return rate_key(self.meter_key, self.price)

    @property
    def event_name(self) -> str:
        return f"{event_name_for(self.meter_key)}_at_{str(self.price).replace('.', '_')}"

    @property
    def unit_amount_cents(self) -> Decimal:
        return unit_amount_cents(self.price)

    def describe(self) -> str:
        if self.unit == MeterUnit.GIB_SECOND:
            month = (self.price * HOURS_PER_MONTH).normalize()
            return f"{self.price} per GiB-hour (about {month} per GiB-month), billed per GiB-second"
        return f"{self.price} per hour, billed per second"


def rate_key(meter_key: str, price: Any) -> str:
    """`<meter key>@<price, 4 places>`: outbox identifiers, Idempotency-Keys, reconciliation."""
    return f"{meter_key}@{Decimal(price).quantize(PRICE_PLACES)}"


def event_name_for(meter_key: str) -> str:
    return "gpucloud_" + "".join(c if c.isalnum() else "_" for c in meter_key)


def unit_of(meter_key: str) -> str:
    if meter_key.startswith(VOLUME_PREFIX) or meter_key == OBJECT_STORAGE:
        return MeterUnit.GIB_SECOND
    return MeterUnit.SECOND


def unit_amount_cents(price_per_unit_hour: Decimal) -> Decimal:
    """Cents per unit (second or GiB-second), 12 places, rounded up (see the module's docstring)."""
    return (price_per_unit_hour * 100 / Decimal(3600)).quantize(UNIT_AMOUNT_PLACES, rounding=ROUND_CEILING)


def stripe_amount_cents(quantity: int, unit_amount: Decimal) -> int:
    """What Stripe charges for `quantity` units at `unit_amount` cents each, to the cent."""
    return int((Decimal(quantity) * unit_amount).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def storage_gib_price() -> Decimal:
    return bucket_metering.price_per_gib_hour()


def rate_and_units(
    meter_key: str, unit_price_per_hour: Decimal, per_gib_hour: Decimal | None = None
) -> tuple[Rate, int] | None:
    """The rate a ledger unit price belongs to and how many units one of its seconds is (1 for instances,
    the GiB for storage). `per_gib_hour` is the price per GiB-hour of a storage row (the volume's; object
    storage's is the setting). None when nothing can be billed (a free storage row)."""
    unit = unit_of(meter_key)
    if unit == MeterUnit.SECOND:
        return Rate(meter_key, unit, unit_price_per_hour), 1
    per_gib = storage_gib_price() if per_gib_hour is None else per_gib_hour
    if unit_price_per_hour <= 0 or per_gib <= 0:
        return None
    gib, rest = divmod(unit_price_per_hour, per_gib)
    if rest:
        # Only when the price per GiB-hour changed after the row was rated (object storage's setting has
        # no history): the row keeps its own price as one unit, so the amount stays exact.
        logger.warning(
            "storage price per GiB-hour does not divide the row's price",
            extra={"meter": meter_key, "unit_price": str(unit_price_per_hour), "per_gib": str(per_gib)},
        )
        return Rate(meter_key, unit, unit_price_per_hour), 1
    return Rate(meter_key, unit, per_gib), int(gib)


# --- the ledger in Stripe's units ------------------------------------------------------------------------


@dataclass(frozen=True)
class Quantity:
    tenant_id: uuid.UUID
    rate: Rate
    hour: datetime  # the hour the rows end in
    value: int  # in rate.unit


def ledger_quantities(*, start: datetime, end: datetime) -> list[Quantity]:
    """Per tenant, rate and hour, the usage of the ledger rows that end in [start, end) (hours), in the
    rate's unit. A row counts in the hour it ends in: it is written once it has ended, so an hour is
    complete shortly after it ends, however long its rows are. Reversals are netted; nothing left, nothing
    returned."""
    ended = Upper("period")
    just_before_end = ExpressionWrapper(
        ended - Value(timedelta(microseconds=1)), output_field=DateTimeField()
    )
    volume_id = Case(
        When(meter__startswith=VOLUME_PREFIX, then=F("resource_id")),
        default=Value(""),
        output_field=CharField(),
    )
    groups = list(
        UsageRecord.objects.annotate(started=Lower("period"), ended=ended)
        .filter(started__gte=start - ROW_SCAN_MARGIN, ended__gt=start, ended__lte=end)
        .annotate(hour=TruncHour(just_before_end, tzinfo=UTC), volume=volume_id)
        .values("tenant_id", "meter", "unit_price_per_hour", "hour", "volume")
        .annotate(seconds=Sum("quantity_seconds"))
        .order_by()
    )
    per_gib = _volume_prices({g["volume"] for g in groups if g["volume"]})
    totals: dict[tuple[uuid.UUID, Rate, datetime], int] = defaultdict(int)
    for g in groups:
        if g["volume"] and g["volume"] not in per_gib:
            logger.warning("ledger row of an unknown volume", extra={"volume": g["volume"]})
            continue
        found = rate_and_units(g["meter"], g["unit_price_per_hour"], per_gib.get(g["volume"]))
        if found is not None:
            rate, units = found
            totals[(g["tenant_id"], rate, g["hour"])] += g["seconds"] * units
    return [
        Quantity(tenant_id=tenant, rate=rate, hour=hour, value=value)
        for (tenant, rate, hour), value in sorted(totals.items(), key=lambda kv: (kv[0][2], str(kv[0][0])))
        if value > 0
    ]


def _volume_prices(ids: Iterable[str]) -> dict[str, Decimal]:
    """The frozen price per GiB-hour of each volume (the ledger keeps size x it)."""
    valid = []
    for raw in ids:
        try:
            valid.append(uuid.UUID(raw))
        except ValueError:
            continue
    rows = Volume.objects.filter(pk__in=valid).values_list("pk", "price_per_gib_hour")
    return {str(pk): price for pk, price in rows}


# --- Stripe meters and prices ----------------------------------------------------------------------------


def ensure_stripe_meter(*, rate: Rate, client: gw.StripeGateway | None = None) -> StripeMeter:
    """The rate's Stripe Meter and Price, created once (deterministic Idempotency-Keys; the unique row keeps
    one mapping when two workers race)."""
    existing = StripeMeter.objects.filter(meter_key=rate.meter_key, price_per_unit_hour=rate.price).first()
    if existing is not None:
        return existing
    client = client or gw.gateway()
    meter = client.create_meter_with_price(
        rate_key=rate.key,
        event_name=rate.event_name,
        display_name=f"gpucloud {rate.meter_key}",
        nickname=rate.describe(),
        currency=currency(),
        unit_amount_cents=rate.unit_amount_cents,
    )
    defaults = {
        "unit": rate.unit,
        "unit_amount_decimal": rate.unit_amount_cents,
        "event_name": meter.event_name,
        "meter_id": meter.id,
        "price_id": meter.price_id,
    }
    try:
        with transaction.atomic():
            record, _ = StripeMeter.objects.get_or_create(
                meter_key=rate.meter_key, price_per_unit_hour=rate.price, defaults=defaults
            )
    except IntegrityError:
        record = StripeMeter.objects.get(meter_key=rate.meter_key, price_per_unit_hour=rate.price)
    return record


def current_rates() -> list[Rate]:
    """The rates in force now: each instance type at its price, and object storage at its setting (volumes
    get theirs on first export: each volume keeps the price it was created at)."""
    rates = [
        Rate(f"{INSTANCE_PREFIX}{slug}", MeterUnit.SECOND, price)
        for slug, price in InstanceType.objects.order_by("slug").values_list("slug", "price_per_hour")
    ]
    if storage_gib_price() > 0:
        rates.append(Rate(OBJECT_STORAGE, MeterUnit.GIB_SECOND, storage_gib_price()))
    return rates


def ensure_current_meters(*, client: gw.StripeGateway | None = None) -> list[StripeMeter]:
    client = client or gw.gateway()
    return [ensure_stripe_meter(rate=rate, client=client) for rate in current_rates()]
