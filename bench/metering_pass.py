"""Metering: one pass of the usage metering (apps/billing/metering.meter_all, what beat runs every 30 s) over
N running instances (default 5,000), each 30 days old, against the bare SQL that reads the same ledger ends
and inserts the same new rows, in the same run over the same ledger.

Data: the instances' ledgers copied in bulk as the metering writes them (a row from the container's start to
the next checkpoint, then one an hour: about 720 an instance, 3.6 million rows at the default N), and their
timelines as services write them (the launch, copies of Kubernetes Events, the container's start and
readiness, an event while running). Every ledger ends at the same checkpoint H; the timed pass runs at
H + 1 h 30 s, so it writes one row per instance, [H, H + 1 h).

Timing: three rounds of each side, alternating which goes first, each in a transaction that is rolled back
(so every round finds the same ledger and writes the same rows), then one pass of ours committed and checked
(every instance got its hour, nothing else). For information, the same pass one instance at a time
(meter_instance per instance, as before the set-based pass), once, rolled back.

Rows per always-on instance-month: before anything else, a few instances run through the longest month
(31 days) before this one with a pass every PASS_EVERY (what one pass every 30 s would write too: the cuts do
not depend on when passes run, tests/billing/test_intervals.py), and the rows starting in that month are
counted; beside it, what 60-second windows gave for the same month.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import common
from bench.common import Progress, ratio

DEFAULT_N = 5000

DAYS = 30
ROUNDS = 3
SIMULATED = 10  # instances run through the simulated month
PASS_EVERY = timedelta(minutes=10)
GOAL_PASS_SECONDS = 1.0
GOAL_ROWS_PER_MONTH = 750
TYPES = ("gpu-h100x1", "cpu-4x")
HOUR = timedelta(hours=1)

BARE_SQL = """
WITH ends AS (
    SELECT i.id, i.tenant_id, 'instance_seconds:' || t.slug AS meter, i.price_per_hour, i.tags, e.period_end
    FROM {instances} i
    JOIN {types} t ON t.id = i.instance_type_id
    CROSS JOIN LATERAL (
        SELECT upper(u.period) AS period_end FROM {ledger} u
        WHERE u.resource_id = i.id::text AND u.meter = 'instance_seconds:' || t.slug AND u.kind = 'usage'
        ORDER BY upper(u.period) DESC
        LIMIT 1
    ) e
    WHERE i.billing_since IS NOT NULL
),
written AS (
    INSERT INTO {ledger} (id, tenant_id, resource_type, resource_id, meter, period, quantity_seconds,
                          unit_price_per_hour, amount, kind, tags, created_at)
    SELECT 'instance:' || id || ':' || meter || ':' || extract(epoch FROM period_end)::bigint, tenant_id,
           'instance', id::text, meter, tstzrange(period_end, period_end + interval '1 hour', '[)'), 3600,
           price_per_hour, round(price_per_hour, 6), 'usage', tags, now()
    FROM ends
    ORDER BY 1
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM written
"""


def longest_month_before(now: datetime) -> tuple[datetime, datetime]:
    """The most recent 31-day UTC month that ended before `now`'s month: the most rows a month can hold."""
    end = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while True:
        start = (end - timedelta(days=1)).replace(day=1)
        if (end - start).days == 31:
            return start, end
        end = start


class Rollback(Exception):
    """Raised to roll a timed round back."""


def rolled_back(work: Any) -> tuple[float, Any]:
    """Time `work()` inside a transaction that is then rolled back."""
    from django.db import transaction

    result: list[Any] = []
    t0 = time.perf_counter()
    try:
        with transaction.atomic():
            result.append(work())
            elapsed = time.perf_counter() - t0
            raise Rollback
    except Rollback:
        pass
    return elapsed, result[0]


def bare(now: datetime) -> int:
    from django.db import connection

    from apps.billing.models import UsageRecord
    from apps.catalog.models import InstanceType
    from apps.instances.models import Instance

    sql = BARE_SQL.format(
        instances=Instance._meta.db_table,
        types=InstanceType._meta.db_table,
        ledger=UsageRecord._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    return int(row[0]) if row else 0


# Our pass's statements by what they read or write (bench figure "split").
STATEMENTS = (
    ("insert", "INSERT INTO"),
    ("ledger ends", "AS k(resource_id"),
    ("billing lines", "AS k(instance_id"),
    ("price versions", "billing_priceversion"),
    ("volumes", "storage_volume"),
    ("instances", "instances_instance"),
)


def split(captured: list[dict[str, Any]], total: float) -> dict[str, float]:
    """Seconds of a pass spent in each kind of statement (as Django timed them), and the rest: Python."""
    spent: dict[str, float] = {}
    for query in captured:
        kind = next((name for name, mark in STATEMENTS if mark in query["sql"]), "other")
        spent[kind] = spent.get(kind, 0.0) + float(query["time"])
    spent["python and the rest"] = total - sum(spent.values())
    return {kind: round(seconds, 3) for kind, seconds in spent.items()}


def bare_plan() -> dict[str, Any]:
    """The baseline's own account (EXPLAIN ANALYZE, rolled back): execution time, JIT compilation, and the
    time of the insert apart from the reads feeding it."""
    from django.db import connection, transaction

    from apps.billing.models import UsageRecord
    from apps.catalog.models import InstanceType
    from apps.instances.models import Instance

    sql = BARE_SQL.format(
        instances=Instance._meta.db_table,
        types=InstanceType._meta.db_table,
        ledger=UsageRecord._meta.db_table,
    )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            (jit,) = cursor.fetchone() or ("?",)
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            (document,) = cursor.fetchone() or ([],)
            raise Rollback
    except Rollback:
        pass
    plan = document[0] if isinstance(document, list) else {}
    return {
        "jit": jit,
        "execution_ms": round(plan.get("Execution Time", 0.0), 1),
        "jit_ms": round(((plan.get("JIT") or {}).get("Timing") or {}).get("Total", 0.0), 1),
    }


def simulate_month(tenant: Any, progress: Progress) -> dict[str, Any]:
    """SIMULATED instances always on through the longest recent month, a metering pass every PASS_EVERY."""
    from datetime import timedelta as td

    from django.db.models.functions import Lower
    from django.utils import timezone

    from apps.billing import intervals, metering
    from apps.billing.models import UsageRecord
    from apps.catalog.models import InstanceType, Region
    from apps.instances.models import Instance, InstanceEvent
    from bench import seed

    start, end = longest_month_before(timezone.now())
    instance_type = InstanceType.objects.get(slug=TYPES[0])
    region = Region.objects.get(slug="us-east-1")
    rows = [
        {**row, "billing_since": start - td(hours=2), "running_since": start - td(hours=2)}
        for row in seed.instance_rows(
            tenant=tenant.tenant,
            count=SIMULATED,
            region=region,
            instance_type=instance_type,
            created_by=tenant.user,
        )
    ]
    seed.copy_rows(Instance, rows)
    for row in rows:
        InstanceEvent.objects.create(
            instance_id=row["id"],
            kind="observation",
            name="pod_started",
            created_at=start - td(hours=2),
            billable=True,
        )
    progress(f"simulating {start:%Y-%m}: {SIMULATED} instances always on, a pass every {PASS_EVERY}")
    t0 = time.perf_counter()
    now, passes = start - HOUR, 0
    while now <= end + HOUR:
        metering.meter_all(now=now)
        now += PASS_EVERY
        passes += 1
    ids = [str(row["id"]) for row in rows]
    in_month = (
        UsageRecord.objects.annotate(start=Lower("period"))
        .filter(resource_id__in=ids, start__gte=start, start__lt=end)
        .count()
    )
    # They stop at the month's end and are left behind: the timed pass does not see them.
    for row in rows:
        InstanceEvent.objects.create(
            instance_id=row["id"], kind="action", name="stop", created_at=end, billable=False
        )
    Instance.objects.filter(pk__in=[row["id"] for row in rows]).update(
        billing_since=None, running_since=None, state="stopped", updated_at=end
    )
    metering.meter_all(now=end + HOUR)
    minute_windows = sum(
        1
        for piece in intervals.pieces(
            [intervals.Interval(start, end)],
            checkpoint=td(seconds=60),
            prices=[(metering.EARLIEST, Decimal("1"))],
            now=end,
        )
    )
    seconds = time.perf_counter() - t0
    progress(
        f"simulated month: {in_month / SIMULATED:.0f} rows an instance in {passes} passes ({seconds:.0f}s)"
    )
    return {
        "month": f"{start:%Y-%m}",
        "days": (end - start).days,
        "instances": SIMULATED,
        "passes": passes,
        "pass_every_seconds": int(PASS_EVERY.total_seconds()),
        "rows_per_instance_month": in_month / SIMULATED,
        "rows_per_instance_month_60s_windows": minute_windows,
    }


def _instances(tenant: Any, n: int, first: datetime) -> list[dict[str, Any]]:
    from apps.catalog.models import InstanceType, Region
    from bench import seed

    region = Region.objects.get(slug="us-east-1")
    rows: list[dict[str, Any]] = []
    for position, slug in enumerate(TYPES):
        count = n // len(TYPES) + (1 if position < n % len(TYPES) else 0)
        instance_type = InstanceType.objects.get(slug=slug)
        for row in seed.instance_rows(
            tenant=tenant.tenant,
            count=count,
            region=region,
            instance_type=instance_type,
            created_by=tenant.user,
            start=SIMULATED + len(rows),  # names after the simulated month's instances
        ):
            # Spread over the first hour, so each ledger starts with a part of an hour.
            started = first + timedelta(seconds=(len(rows) * 7) % 3600)
            rows.append(
                {
                    **row,
                    "billing_since": started,
                    "running_since": started,
                    "created_at": started - timedelta(seconds=40),
                    "tags": {"team": f"team-{len(rows) % 7}", "env": "prod"},
                    "_type_slug": slug,
                }
            )
    return rows


def _events(instances: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each timeline as services and the operator write it."""
    for row in instances:
        started = row["billing_since"]
        lines = (
            ("action", "launch", "", "pending", False, -40),
            ("system", "provisioning", "pending", "provisioning", False, -38),
            ("kube_event", "Scheduled", "provisioning", "provisioning", False, -37),
            ("kube_event", "Pulled", "provisioning", "provisioning", False, -5),
            ("kube_event", "Started", "provisioning", "provisioning", False, -1),
            ("observation", "pod_started", "provisioning", "provisioning", True, 0),
            ("observation", "pod_ready", "provisioning", "running", True, 3),
            ("kube_event", "Unhealthy", "running", "running", True, 86400 * 3),
        )
        for kind, name, from_state, to_state, billable, offset in lines:
            yield {
                "instance_id": row["id"],
                "created_at": started + timedelta(seconds=offset),
                "kind": kind,
                "name": name,
                "from_state": from_state,
                "to_state": to_state,
                "billable": billable,
            }


def _ledger(instances: list[dict[str, Any]], until: datetime) -> Iterator[dict[str, Any]]:
    """Every instance's rows up to `until`, as the metering writes them (the same cutting and row ids)."""
    from apps.billing import intervals, metering

    step = metering.checkpoint()
    for row in instances:
        metered = metering.Metered(
            "instance",
            str(row["id"]),
            f"instance_seconds:{row['_type_slug']}",
            row["tenant_id"],
            metering.tags_json(row["tags"]),
        )
        pieces = intervals.pieces(
            [intervals.Interval(row["billing_since"], until)],
            checkpoint=step,
            prices=[(metering.EARLIEST, row["price_per_hour"])],
            now=until,
        )
        for ledger_row in metering.rows_for(metered, pieces):
            yield {
                "id": ledger_row.id,
                "tenant_id": ledger_row.tenant_id,
                "resource_type": ledger_row.resource_type,
                "resource_id": ledger_row.resource_id,
                "meter": ledger_row.meter,
                "period": f"[{ledger_row.start.isoformat()},{ledger_row.end.isoformat()})",
                "quantity_seconds": ledger_row.seconds,
                "unit_price_per_hour": ledger_row.price_per_hour,
                "amount": ledger_row.amount,
                "kind": "usage",
                "tags": ledger_row.tags_json,
                "created_at": ledger_row.end + timedelta(seconds=30),
            }


# The same rows as _ledger, generated by the server (minutes faster for millions of rows): from the
# container's start to the next hour, then one a hour up to `last`; amounts rounded half up like amount_for.
LEDGER_SQL = """
INSERT INTO {ledger} (id, tenant_id, resource_type, resource_id, meter, period, quantity_seconds,
                      unit_price_per_hour, amount, kind, tags, created_at)
SELECT 'instance:' || i.id || ':instance_seconds:' || t.slug || ':' || extract(epoch FROM p.lo)::bigint,
       i.tenant_id, 'instance', i.id::text, 'instance_seconds:' || t.slug, tstzrange(p.lo, p.hi, '[)'),
       extract(epoch FROM p.hi - p.lo)::bigint, i.price_per_hour,
       round(i.price_per_hour * extract(epoch FROM p.hi - p.lo)::numeric / 3600, 6), 'usage', i.tags,
       p.hi + interval '30 seconds'
FROM {instances} i
JOIN {types} t ON t.id = i.instance_type_id
CROSS JOIN LATERAL (
    SELECT greatest(h, i.billing_since) AS lo, h + interval '1 hour' AS hi
    FROM generate_series(
        date_trunc('hour', i.billing_since AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
        %(last)s - interval '1 hour',
        interval '1 hour'
    ) AS h
) p
WHERE i.billing_since IS NOT NULL AND i.id = ANY(%(ids)s)
"""


def ledger_indexes_dropped(cursor: Any) -> list[str]:
    """Drop the ledger's constraints and indexes for a bulk load; returns the statements that build every
    one of them again, exactly as the migrations made them."""
    table = "billing_usagerecord"
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass"
        " AND contype IN ('p', 'u', 'x', 'f') ORDER BY contype = 'f', conname",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass AND NOT EXISTS"
        " (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)"
        " ORDER BY c.relname",
        [table],
    )
    indexes = cursor.fetchall()
    for name, _, _ in sorted(constraints, key=lambda c: c[1] != "f"):  # foreign keys first
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for name, _, definition in constraints
    ] + [definition for _, definition in indexes]


def _without(rows: Iterable[dict[str, Any]], key: str) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {k: v for k, v in row.items() if k != key}


def run(n: int, progress: Progress) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection
    from django.db.models.functions import Lower
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.billing import metering
    from apps.billing.models import UsageRecord
    from apps.catalog.models import InstanceType
    from apps.instances.models import Instance, InstanceEvent
    from bench import db, seed

    db.reset(progress)
    seed.catalog()
    tenant = seed.tenant("bench-metering")
    month = simulate_month(tenant, progress)

    # Every ledger ends at the checkpoint `last`; the pass at `now` owes each instance one hour.
    last = timezone.now().replace(minute=0, second=0, microsecond=0) - HOUR
    now = last + HOUR + timedelta(seconds=30)
    instances = _instances(tenant, n, last - timedelta(days=DAYS))
    t0 = time.perf_counter()
    seed.copy_rows(Instance, _without(instances, "_type_slug"))
    events = len(
        InstanceEvent.objects.bulk_create((InstanceEvent(**e) for e in _events(instances)), batch_size=5000)
    )
    with connection.cursor() as cursor:
        rebuild = ledger_indexes_dropped(cursor)
        ids = [row["id"] for row in instances]
        rows = 0
        for start in range(0, len(ids), 500):
            cursor.execute(
                LEDGER_SQL.format(
                    ledger=UsageRecord._meta.db_table,
                    instances=Instance._meta.db_table,
                    types=InstanceType._meta.db_table,
                ),
                {"last": last, "ids": ids[start : start + 500]},
            )
            rows += cursor.rowcount
        progress(f"{rows:,} ledger rows written; building the ledger's indexes and constraints again")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for statement in rebuild:
            cursor.execute(statement)
    # The ledger is what the metering writes: a sample of instances checked row for row.
    sample = instances[:: max(1, n // 20)]
    expected = {(r["id"], r["period"], r["quantity_seconds"], r["amount"]) for r in _ledger(sample, last)}
    found = {
        (r.id, f"[{r.period.lower.isoformat()},{r.period.upper.isoformat()})", r.quantity_seconds, r.amount)
        for r in UsageRecord.objects.filter(resource_id__in=[str(x["id"]) for x in sample])
    }
    if expected != found:
        raise RuntimeError(f"the copied ledger differs from the metering's: {len(expected ^ found)} rows")
    db.analyze()
    progress(
        f"{n} instances, {events} events, {rows:,} ledger rows copied in {time.perf_counter() - t0:.0f}s"
    )

    ours_runs: list[float] = []
    bare_runs: list[float] = []
    rolled_back(lambda: metering.meter_all(now=now))  # warms up both sides' pages
    for round_ in range(ROUNDS):
        sides = [("ours", lambda: metering.meter_all(now=now)), ("bare", lambda: bare(now))]
        for side, work in sides if round_ % 2 else reversed(sides):
            seconds, written = rolled_back(work)
            (ours_runs if side == "ours" else bare_runs).append(seconds)
            if written != n:
                raise RuntimeError(f"{side} wrote {written} rows, not {n}")
        progress(f"round {round_ + 1}: ours {ours_runs[-1]:.3f}s, bare SQL {bare_runs[-1]:.3f}s")

    def one_at_a_time() -> int:
        chosen = Instance.objects.filter(billing_since__isnull=False).select_related("instance_type")
        return sum(metering.meter_instance(instance, now=now) for instance in chosen)

    loop_seconds, loop_written = rolled_back(one_at_a_time)
    progress(f"one instance at a time: {loop_written} rows in {loop_seconds:.2f}s (informational)")

    plan = bare_plan()
    progress(f"bare SQL, EXPLAIN ANALYZE: {plan}")
    with CaptureQueriesContext(connection) as captured:
        t0 = time.perf_counter()
        written = metering.meter_all(now=now)
        committed = time.perf_counter() - t0
    spent = split(captured.captured_queries, committed)
    progress(f"committed pass by statement: {spent}")
    new_hour = (
        UsageRecord.objects.annotate(start=Lower("period")).filter(start=last, quantity_seconds=3600).count()
    )
    ours, baseline = statistics.median(ours_runs), statistics.median(bare_runs)
    progress(
        f"committed pass: {written} rows in {committed:.3f}s; {new_hour} instances have the hour from {last}"
    )
    return {
        "instances": n,
        "days": DAYS,
        "ledger_rows": rows,
        "events": events,
        "chunk": settings.BILLING_METERING_CHUNK,
        "checkpoint_seconds": settings.BILLING_CHECKPOINT_SECONDS,
        "rows_written": written,
        "queries_per_pass": len(captured.captured_queries),
        "ours_seconds": round(ours, 3),
        "ours_runs_seconds": [round(s, 3) for s in ours_runs],
        "ours_committed_seconds": round(committed, 3),
        "ours_split_seconds": spent,
        "baseline_plan": plan,
        "baseline_seconds": round(baseline, 3),
        "baseline_runs_seconds": [round(s, 3) for s in bare_runs],
        "ratio": ratio(ours, baseline),
        "one_at_a_time_seconds": round(loop_seconds, 2),
        "one_at_a_time_ratio": ratio(loop_seconds, ours),
        "simulated_month": month,
        "goals": {
            f"a pass over {n} instances < {GOAL_PASS_SECONDS:g} s": ours < GOAL_PASS_SECONDS,
            f"rows per always-on instance-month <= {GOAL_ROWS_PER_MONTH}": month["rows_per_instance_month"]
            <= GOAL_ROWS_PER_MONTH,
            "each instance got exactly its new hour": written == n == new_hour,
        },
    }


def main() -> int:
    args = common.parser(
        "One metering pass against the bare SQL writing the same rows.", DEFAULT_N, "running instances"
    ).parse_args()
    return common.run_main("metering_pass", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
