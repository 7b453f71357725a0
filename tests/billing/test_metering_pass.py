"""The set-based metering pass (apps/billing/metering.py meter_all): a constant number of queries per chunk of
resources, whatever their number within a chunk and however long they have run; the ledger it leaves is the
one a full recomputation of every timeline gives (stops and starts, a price change mid-hour, the start of a
month, a volume resize), with the resources' tags on every row; and the wallet adds exactly the usage not
yet in the ledger, so metering never moves it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing import intervals, metering, volume_metering
from apps.billing.models import PriceVersion, UsageRecord
from apps.billing.selectors import wallet_of
from apps.catalog.models import InstanceType, Region
from apps.instances.models import Instance, InstanceEvent
from apps.storage.models import Volume, VolumeEvent
from tests.billing.wallet_helpers import grant
from tests.support.factories import instance_row, volume_row

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 1, tzinfo=UTC)  # a month starts
HOUR = timedelta(hours=1)
D = Decimal


def line(
    instance: Instance, at: datetime, billable: bool, *, kind: str = "observation", name: str = ""
) -> None:
    InstanceEvent.objects.create(
        instance=instance,
        kind=kind,
        name=name or ("pod_started" if billable else "stop"),
        created_at=at,
        billable=billable,
    )


def launched(
    owner: Any, name: str, start: datetime, *, type_slug: str = "gpu-h100x1", **fields: Any
) -> Instance:
    """An instance launched just before `start` and billed from `start`, its timeline as services write it:
    the launch (not billed), a copy of a Kubernetes Event (never a billing line), the container's start."""
    instance = instance_row(
        tenant=owner.tenant,
        instance_type=InstanceType.objects.get(slug=type_slug),
        region=Region.objects.get(slug="us-east-1"),
        created_by=owner.user,
        name=name,
        billing_since=start,
        running_since=start,
        **fields,
    )
    line(instance, start - timedelta(seconds=20), False, kind="action", name="launch")
    line(instance, start - timedelta(seconds=3), True, kind="kube_event", name="Started")
    line(instance, start, True)
    return instance


@dataclass
class Pass:
    queries: int
    written: int


def a_pass(now: datetime) -> Pass:
    with CaptureQueriesContext(connection) as ctx:
        written = metering.meter_all(now=now)
    return Pass(len(ctx.captured_queries), written)


def test_a_pass_costs_the_same_queries_for_2_or_12_instances_an_hour_or_a_month_old(
    catalog: Any, owner: Any, settings: Any
) -> None:
    settings.BILLING_METERING_CHUNK = 50
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for n in range(2):
        launched(owner, f"young-{n}", now - 2 * HOUR - timedelta(seconds=17 * n))
    metering.meter_all(now=now)
    small = a_pass(now + HOUR + timedelta(seconds=30))
    assert small.written == 2

    for n in range(10):
        old = launched(owner, f"old-{n}", now - timedelta(days=30, seconds=7 * n), tags={"n": str(n)})
        # Stopped and started again on the way, with Kubernetes Events copied in between.
        line(old, now - timedelta(days=12, minutes=n), False)
        line(old, now - timedelta(days=12, minutes=n) + timedelta(seconds=5), False, kind="kube_event")
        line(old, now - timedelta(days=11), True)
    metering.meter_all(now=now + HOUR + timedelta(seconds=30))  # their backlog: a month of rows each
    assert UsageRecord.objects.filter(tags={"n": "0"}).count() > 600

    big = a_pass(now + 2 * HOUR + timedelta(seconds=30))
    assert big.written == 12
    # The instances (one query), one chunk of four (ledger ends, billing lines, prices, the insert), the
    # volumes (one query: none here).
    assert big.queries == small.queries == 1 + 4 + 1

    settings.BILLING_METERING_CHUNK = 5
    assert a_pass(now + 3 * HOUR + timedelta(seconds=30)) == Pass(1 + 3 * 4 + 1, 12)  # three chunks


def test_the_checkpoint_must_divide_an_hour(settings: Any) -> None:
    """So no row crosses an hour: the Stripe export and the usage reports group the ledger by hour."""
    settings.BILLING_CHECKPOINT_SECONDS = 5400
    with pytest.raises(ImproperlyConfigured):
        metering.checkpoint()
    settings.BILLING_CHECKPOINT_SECONDS = 900
    assert metering.checkpoint() == timedelta(minutes=15)


@dataclass
class Fixture:
    instances: list[Instance]
    volumes: list[Volume]
    script: list[tuple[datetime, Callable[[], None]]]  # what happens when, applied in time order


def varied(owner: Any) -> Fixture:
    """Instances and volumes around the start of November, and what happens to them later."""
    h100 = InstanceType.objects.get(slug="gpu-h100x1")
    # Price changes of the H100 type, mid-hour and on the hour, set in advance as staff do.
    PriceVersion.objects.create(
        instance_type=h100,
        price_per_hour=D("2.2900"),
        effective_from=T0 - HOUR + timedelta(minutes=22, seconds=13),
    )
    PriceVersion.objects.create(instance_type=h100, price_per_hour=D("2.5900"), effective_from=T0 + 3 * HOUR)
    always = launched(owner, "always", T0 - timedelta(hours=30, seconds=-17), tags={"team": "a"})
    churn = launched(owner, "churn", T0 - timedelta(hours=5, minutes=-3, seconds=-20.5), tags={"team": "b"})
    failing = launched(owner, "failing", T0 - 2 * HOUR, type_slug="cpu-4x")
    v1 = volume_row(owner.tenant, size_gib=10, storage_class="standard", tags={"data": "raw"})
    v2 = volume_row(owner.tenant, size_gib=100, storage_class="standard")

    def volume_event(
        volume: Volume, name: str, at: datetime, size: int
    ) -> tuple[datetime, Callable[[], None]]:
        return at, lambda: VolumeEvent.objects.create(volume=volume, name=name, created_at=at, size_gib=size)

    def instance_line(
        instance: Instance, at: datetime, billable: bool, **kw: Any
    ) -> tuple[datetime, Callable[[], None]]:
        return at, lambda: line(instance, at, billable, **kw)

    script = [
        volume_event(v1, "created", T0 - timedelta(hours=6, seconds=-11), 10),
        volume_event(v2, "created", T0 - 2 * HOUR, 100),
        instance_line(churn, T0 - 3 * HOUR + timedelta(minutes=12), False),  # stopped
        instance_line(churn, T0 - 3 * HOUR + timedelta(minutes=14), False, kind="kube_event"),
        instance_line(churn, T0 - 3 * HOUR + timedelta(minutes=40), True),  # started again
        volume_event(v1, "resized", T0 - timedelta(minutes=20, seconds=5), 30),
        instance_line(failing, T0 + timedelta(minutes=30), False, name="failed"),
        volume_event(v2, "resized", T0 + HOUR + timedelta(minutes=30), 150),
        instance_line(
            churn, T0 + 2 * HOUR + timedelta(minutes=5, seconds=33), False, kind="action", name="restart"
        ),
        instance_line(churn, T0 + 2 * HOUR + timedelta(minutes=7), True),
        volume_event(v1, "delete_requested", T0 + 4 * HOUR + timedelta(seconds=1), 30),
    ]
    volumes = list(Volume.objects.filter(pk__in=[v1.pk, v2.pk]).order_by("created_at"))  # prices as stored
    return Fixture([always, churn, failing], volumes, sorted(script, key=lambda step: step[0]))


def tags(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True)


def expected_rows(fixture: Fixture, now: datetime) -> set[tuple[Any, ...]]:
    """The rows a recomputation of every whole timeline gives: what metering each resource from its start
    (the per-instance metering before passes continued from the ledger's end) would write."""
    step = metering.checkpoint()
    rows: set[tuple[Any, ...]] = set()
    for instance in fixture.instances:
        found = intervals.pieces(
            intervals.billed_intervals(metering.transitions_of(instance)),
            checkpoint=step,
            prices=metering.prices_for(instance),
            now=now,
        )
        meter = metering.meter_key(instance)
        rows |= {
            (
                metering.record_id(instance, meter, p.start),
                p.start,
                p.end,
                p.seconds,
                p.price_per_hour,
                tags(instance.tags),
            )
            for p in found
        }
    for volume in fixture.volumes:
        interval, prices = volume_metering.billed_interval_and_prices(volume)
        assert interval is not None
        meter = volume_metering.meter_key(volume)
        rows |= {
            (
                volume_metering.record_id(volume, meter, p.start),
                p.start,
                p.end,
                p.seconds,
                p.price_per_hour,
                tags(volume.tags),
            )
            for p in intervals.pieces([interval], checkpoint=step, prices=prices, now=now)
        }
    return rows


def ledger_rows() -> set[tuple[Any, ...]]:
    rows = set()
    for row in UsageRecord.objects.all():
        assert row.amount == metering.amount_for(row.quantity_seconds, row.unit_price_per_hour)
        rows.add(
            (
                row.id,
                row.period.lower,
                row.period.upper,
                row.quantity_seconds,
                row.unit_price_per_hour,
                tags(row.tags),
            )
        )
    return rows


def test_the_ledger_of_many_passes_equals_a_full_recomputation(catalog: Any, owner: Any) -> None:
    fixture = varied(owner)
    # Passes at uneven times, some on a checkpoint or an event to the second, with the task that meters one
    # instance when its billing stops running in between.
    passes = sorted(
        {T0 - timedelta(hours=30) + timedelta(minutes=37 * k) for k in range(60)}
        | {T0, T0 + timedelta(seconds=1), T0 + timedelta(minutes=30), T0 + 2 * HOUR + timedelta(minutes=6)}
    )
    script = list(fixture.script)
    end = T0 + 6 * HOUR + timedelta(minutes=10)
    for now in [*passes, end]:
        while script and script[0][0] <= now:
            script.pop(0)[1]()
        metering.meter_all(now=now)
        if now == T0 + 2 * HOUR + timedelta(minutes=6):
            assert metering.meter_instance(fixture.instances[1], now=now) == 0  # the pass wrote it already

    expected = expected_rows(fixture, end)
    assert ledger_rows() == expected
    starts = {start for _, start, *_ in expected}
    # The fixture covers what it claims: rows cut at the price change mid-hour and at the month's start.
    assert T0 - HOUR + timedelta(minutes=22, seconds=13) in starts and T0 in starts
    assert metering.meter_all(now=end) == 0  # idempotent


def test_rows_of_volumes_and_buckets_carry_their_tags(catalog: Any, owner: Any) -> None:
    from apps.billing import bucket_metering
    from apps.storage.objects.models import Bucket
    from apps.storage.objects.usage import Sample

    volume = Volume.objects.get(pk=volume_row(owner.tenant, size_gib=10, tags={"project": "atlas"}).pk)
    VolumeEvent.objects.create(volume=volume, name="created", created_at=T0, size_gib=10)
    assert volume_metering.meter_volume(volume, now=T0 + 2 * HOUR) == 2
    assert [r.tags for r in UsageRecord.objects.filter(resource_id=str(volume.pk))] == [
        {"project": "atlas"}
    ] * 2

    bucket = Bucket(
        tenant=owner.tenant, name="b", physical_name="b", created_at=T0, tags={"project": "atlas"}
    )
    assert bucket_metering.write_samples([Sample(bucket, 5 * 1024**3)], now=T0 + HOUR) == 1
    row = UsageRecord.objects.get(resource_type="bucket")
    assert (row.tags, row.resource_id) == ({"project": "atlas"}, str(bucket.pk))


def test_a_wallet_read_mid_hour_adds_exactly_what_the_ledger_does_not_hold_yet(
    catalog: Any, owner: Any, settings: Any
) -> None:
    settings.VOLUME_PRICE_PER_GIB_HOUR = D("0.0002")
    grant(owner.tenant, "100.00", at=T0 - timedelta(days=2))
    launched(owner, "runs", T0 - 2 * HOUR + timedelta(minutes=15, seconds=7))
    volume = volume_row(owner.tenant, size_gib=50, price_per_gib_hour="0.0002")
    VolumeEvent.objects.create(
        volume=volume, name="created", created_at=T0 - timedelta(minutes=90), size_gib=50
    )
    price, storage = D("2.4900"), D("0.0100")

    metering.meter_all(now=T0 + timedelta(minutes=20))  # the ledger holds October, up to midnight
    ledger = sum(UsageRecord.objects.values_list("amount", flat=True), D(0))
    # 22:15:07 to 23:00 and 23:00 to midnight; the volume's 22:30 to 23:00 and 23:00 to midnight.
    assert ledger == sum(
        (
            metering.amount_for(s, p)
            for s, p in ((2693, price), (3600, price), (1800, storage), (3600, storage))
        ),
        D(0),
    )
    read = T0 + timedelta(minutes=20, seconds=33)
    w = wallet_of(owner.tenant, read)
    unmetered = metering.amount_for(1233, price) + metering.amount_for(1233, storage)
    assert w.usage_total == ledger + unmetered
    assert w.balance == w.credits - ledger - unmetered
    assert w.month_to_date_spend == unmetered  # every ledger row is October's
    assert w.burn_rate_per_hour == price + storage
    assert w.runway_seconds == int(w.balance * 3600 / (price + storage))

    # Hours later, with no pass in between (a worker down): the open part spans checkpoints and is cut and
    # rated as the ledger will be, so the pass that catches up moves nothing.
    later = T0 + 3 * HOUR + timedelta(minutes=20, seconds=33)
    before = wallet_of(owner.tenant, later)
    assert metering.meter_all(now=later) == 6  # three hours of each
    after = wallet_of(owner.tenant, later)
    assert (after.balance, after.usage_total, after.month_to_date_spend) == (
        before.balance,
        before.usage_total,
        before.month_to_date_spend,
    )
    november = UsageRecord.objects.filter(period__startswith__gte=T0).values_list("amount", flat=True)
    assert after.month_to_date_spend == sum(november, D(0)) + unmetered
