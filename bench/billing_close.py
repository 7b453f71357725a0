"""Billing: the month close (apps/billing/invoices/services.month_close, what the close_billing_period command
and the monthly task run) against the bare SQL aggregation of the same month (one GROUP BY: the least any
month close must read), side by side in one run:

- `main`: N tenants (default 5,000) with about 1,000,000 ledger rows in the closed month, the month before
  closed already (a steady-state close: credits carry on from that close's snapshots);
- `history`: the same month and tenants after 12 closed months of the same usage, against `main`;
- `size`: the same close at about 5,000,000 rows (5x the tenants), for the growth;
- `fleet`: a month of 100,000 instances (10 per tenant) of the same mix.

Rows are what metering writes now: hourly pieces (windows aligned to the hour; a run's last piece is
partial), each created a minute after it ends, loaded in time order as the ledger grows. The mix, per
instance and month (stated, not measured from a real fleet): 10% always on (744 rows in a 31-day month),
30% one run of 5 days (120 rows), 60% one run of 1 to 16 hours with a partial last hour (about 9.5 rows):
about 116 rows an instance. Three instance types, one of which changes price mid-month (two lines). 20% of
tenants top up mid-month, 10% have a promotion that expires mid-month, 1% a refund: the wallet draw-down has
boundaries inside the month. 1% of tenants have a row of the month before that arrives during the month (an
outage): an adjustment line, and that tenant's wallet computed from its whole history.

The ledger's primary key, its exclusion constraint and its two per-resource indexes are dropped while the
rows load and not rebuilt (the close reads none of them; metering does); the five indexes the close reads
are built after the load, then VACUUM ANALYZE, as a ledger that has aged a month would be.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench import common
from bench.common import Progress, ratio

DEFAULT_N = 5000  # tenants of the main point: about 1,000,000 rows in the month
INSTANCES_PER_TENANT = 2  # the main, history and size points
FLEET_INSTANCES = 100_000
FLEET_PER_TENANT = 10
HISTORY_MONTHS = 12
TYPES = (  # meter, price in the first half of the month, in the second
    ("instance_seconds:gpu-h100x1", Decimal("2.4900"), Decimal("2.2900")),
    ("instance_seconds:gpu-a100x1", Decimal("1.2900"), Decimal("1.2900")),
    ("instance_seconds:cpu-4x", Decimal("0.1200"), Decimal("0.1200")),
)
GOAL_RATIO = 3.0
GOAL_HISTORY = 1.2

BARE_SQL = """
SELECT tenant_id, meter, unit_price_per_hour, SUM(quantity_seconds), SUM(amount), MIN(lower(period))
FROM billing_usagerecord
WHERE lower(period) >= %s AND lower(period) < %s
GROUP BY tenant_id, meter, unit_price_per_hour
"""

# The instances of one month: kind by position (10% always on, 30% five days, 60% short), start hour and
# length drawn from a hash of the instance so every month and run is the same.
INSTANCES_SQL = """
CREATE TEMP TABLE bench_instances AS
SELECT t.tenant_id, t.n * %(per)s + k AS ix, md5(t.tenant_id::text || k::text) AS h, k
FROM (SELECT id AS tenant_id, row_number() OVER (ORDER BY id) - 1 AS n FROM tenants_tenant
      WHERE slug LIKE 'bench-bill-%%') t, generate_series(0, %(per)s - 1) k
"""

ROWS_SQL = """
INSERT INTO billing_usagerecord (id, tenant_id, resource_type, resource_id, meter, period, quantity_seconds,
                                 unit_price_per_hour, amount, kind, tags, created_at)
SELECT 'instance:' || r.rid || ':' || r.meter || ':' || extract(epoch FROM p.s)::bigint,
       r.tenant_id, 'instance',
       r.rid, r.meter, tstzrange(p.s, p.e, '[)'), extract(epoch FROM p.e - p.s)::bigint, r.price,
       round(extract(epoch FROM p.e - p.s)::numeric * r.price / 3600, 6), 'usage', '{}',
       CASE WHEN r.late AND p.s = r.begin THEN %(arrives)s ELSE p.e + interval '1 minute' END
FROM (
    SELECT i.tenant_id, md5(i.h || %(month)s) AS rid, i.meter,
           CASE WHEN i.meter LIKE '%%h100%%' AND i.begin >= %(mid)s THEN %(price2)s ELSE i.price END AS price,
           i.begin, i.stop, i.late
    FROM (
        SELECT b.tenant_id, b.h, ty.meter, ty.price, b.late, b.begin,
               least(%(end)s, b.begin + b.hours * interval '1 hour' + b.extra * interval '1 second') AS stop
        FROM (
            SELECT tenant_id, h,
                   ('x' || substr(h, 1, 8))::bit(32)::int & 2147483647 AS r1,
                   ('x' || substr(h, 9, 8))::bit(32)::int & 2147483647 AS r2,
                   %(start)s + (CASE WHEN ix %% 10 = 0 THEN 0
                                     ELSE (('x' || substr(h, 9, 8))::bit(32)::int & 2147483647) %% %(hours)s
                                END) * interval '1 hour' AS begin,
                   CASE WHEN ix %% 10 = 0 THEN %(hours)s WHEN ix %% 10 < 4 THEN 120
                        ELSE 1 + (('x' || substr(h, 17, 8))::bit(32)::int & 2147483647) %% 16 END AS hours,
                   CASE WHEN ix %% 10 >= 4 THEN (('x' || substr(h, 25, 8))::bit(32)::int & 2147483647) %% 3600
                        ELSE 0 END AS extra,
                   %(with_late)s AND k = 0
                       AND (('x' || substr(h, 1, 8))::bit(32)::int & 2147483647) %% 100 = 7
                       AS late
            FROM bench_instances
        ) b
        JOIN (SELECT * FROM unnest(%(meters)s::text[], %(prices)s::numeric[]) WITH ORDINALITY
              AS x(meter, price, o)) ty ON ty.o = 1 + b.r1 %% 3
    ) i
) r,
LATERAL (SELECT g AS s, least(g + interval '1 hour', r.stop) AS e
         FROM generate_series(r.begin, r.stop - interval '1 microsecond', interval '1 hour') g) p
ORDER BY p.s
"""


def _months_before(month: date, count: int) -> list[date]:
    from apps.billing.invoices import periods

    months = [month]
    for _ in range(count):
        months.insert(0, periods.previous_month(months[0]))
    return months


def _tenants(count: int, start: datetime) -> list[Any]:
    from apps.tenants.models import Tenant
    from bench import seed

    ids = [uuid.uuid4() for _ in range(count)]
    seed.copy_rows(
        Tenant,
        (
            {"id": pk, "name": f"Bench {i}", "slug": f"bench-bill-{i:06d}", "status": "active",
             "created_at": start - timedelta(days=30)}
            for i, pk in enumerate(ids)
        ),
    )  # fmt: skip
    return ids


def _ledger_indexes(cursor: Any, drop: bool) -> None:
    """Drop every index and constraint of the ledger (load), or build the five the close and its bare
    GROUP BY read (billing migrations 0007 and 0009)."""
    if drop:
        cursor.execute(
            "SELECT conname FROM pg_constraint "
            "WHERE conrelid = 'billing_usagerecord'::regclass AND contype IN ('p', 'x', 'u')"
        )
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE billing_usagerecord DROP CONSTRAINT "{name}" CASCADE')
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'billing_usagerecord'")
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        return
    cursor.execute("SET maintenance_work_mem = '1GB'")
    cursor.execute("CREATE INDEX usage_period_start_idx ON billing_usagerecord (lower(period), tenant_id)")
    cursor.execute("CREATE INDEX usage_tenant_created_idx ON billing_usagerecord (tenant_id, created_at)")
    cursor.execute(
        "CREATE INDEX usage_tenant_period_end_idx ON billing_usagerecord (tenant_id, upper(period))"
    )
    cursor.execute(
        "CREATE INDEX usage_period_start_brin ON billing_usagerecord USING brin (lower(period)) "
        "WITH (pages_per_range = 32)"
    )
    cursor.execute(
        "CREATE INDEX usage_late_rows_idx ON billing_usagerecord (tenant_id, created_at) "
        "WHERE (created_at - upper(period)) > '1:00:00'::interval"
    )


def _load_month(cursor: Any, month: date, per: int, *, late: bool) -> int:
    """One month of the mix for every bench tenant, plus its wallet events. Returns the rows written."""
    from apps.billing.invoices import periods

    start, end = periods.bounds(month)
    hours = int((end - start).total_seconds() // 3600)
    cursor.execute(
        ROWS_SQL,
        {
            "start": start,
            "end": end,
            "mid": start + timedelta(days=15),
            "hours": hours,
            "month": f"{month:%Y-%m}",
            "meters": [t[0] for t in TYPES],
            "prices": [t[1] for t in TYPES],
            "price2": TYPES[0][2],
            "with_late": late,
            "arrives": end + timedelta(days=3),  # in the month after: after this one was closed
        },
    )
    rows = cursor.rowcount
    # Top-ups mid-month (20%), promotions expiring mid-month (10%), refunds (1%): boundaries in the month.
    cursor.execute(
        """
        INSERT INTO billing_creditgrant (id, tenant_id, kind, amount, reason, expires_at, external_id,
                                         created_at)
        SELECT gen_random_uuid(), tenant_id, kind, amount, 'bench', expires, NULL, at
        FROM (SELECT tenant_id, row_number() OVER (ORDER BY tenant_id) AS n
              FROM bench_instances WHERE k = 0) t,
        LATERAL (VALUES
            ('paid', 500.00, NULL::timestamptz,
             %(start)s + (n %% 28) * interval '1 day' + interval '7 hours', n %% 5 = 0),
            ('promotional', 50.00, %(start)s + interval '15 days', %(start)s, n %% 10 = 3)
        ) v(kind, amount, expires, at, chosen)
        WHERE chosen
        """,
        {"start": start},
    )
    cursor.execute(
        """
        INSERT INTO billing_creditreversal (id, tenant_id, grant_id, cause, source_id, sequence, amount,
                                            stripe_event_id, reason, created_at)
        SELECT gen_random_uuid(), g.tenant_id, g.id, 'refund', 're_' || g.id, 1, 20.00, '', 'bench',
               g.created_at + interval '2 days'
        FROM billing_creditgrant g
        WHERE g.kind = 'paid' AND g.created_at >= %(start)s AND g.created_at < %(end)s
          AND ('x' || substr(md5(g.tenant_id::text), 1, 8))::bit(32)::int %% 20 = 0
        """,
        {"start": start, "end": end - timedelta(days=3)},
    )
    return rows


def _world(months: list[date], tenants: int, per: int, progress: Progress) -> dict[str, Any]:
    """A fresh database with `tenants` tenants and `months` of ledger (the last one is measured; the others
    closed in order, each half an hour after it ended, as the monthly task does)."""
    from django.db import connection

    from apps.billing.invoices import periods, services
    from bench import seed

    _reset(progress)
    seed.catalog()
    start = periods.bounds(months[0])[0]
    _tenants(tenants, start)
    t0 = time.perf_counter()
    rows = 0
    with connection.cursor() as cursor:
        _ledger_indexes(cursor, drop=True)
        cursor.execute(INSTANCES_SQL, {"per": per})
        for index, month in enumerate(months):
            # A late row of the month before arrives in the measured month (an outage).
            rows_of = _load_month(cursor, month, per, late=index == len(months) - 2)
            rows += rows_of
            progress(f"{month:%Y-%m}: {rows_of:,} rows")
        _ledger_indexes(cursor, drop=False)
        cursor.execute("DROP TABLE bench_instances")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT now()")
        (loaded,) = cursor.fetchone()
    progress(
        f"{tenants} tenants, {rows:,} ledger rows over {len(months)} month(s) "
        f"in {time.perf_counter() - t0:.0f}s"
    )
    for month in months[:-1]:
        t0 = time.perf_counter()
        result = services.month_close(month=month, now=periods.bounds(month)[1] + timedelta(minutes=30))
        progress(
            f"closed {month:%Y-%m} (setup): {len(result.invoice_ids)} invoices "
            f"in {time.perf_counter() - t0:.1f}s"
        )
    _checkpointed(loaded, progress)
    return {"rows": rows}


def _checkpointed(since: datetime, progress: Progress, limit: float = 420) -> None:
    """Wait until a checkpoint that began after the load has completed (at most `limit` s): the load
    leaves gigabytes of dirty pages and WAL, and a checkpoint writing them during the close would slow its
    writes and commits, not the read-only baseline. A ledger closed a month after it was written has had
    its checkpoints long ago."""
    from django.db import connection

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        with connection.cursor() as cursor:
            cursor.execute("SELECT checkpoint_time FROM pg_control_checkpoint()")
            (done,) = cursor.fetchone()
        if done >= since:
            break
        time.sleep(5)
    progress(f"waited {time.perf_counter() - t0:.0f}s for the load's checkpoint")


def _reset(progress: Progress) -> None:
    """db.reset, waiting for an autovacuum worker (a superuser process the reset may not end) that the
    previous point's load left busy on the database."""
    import psycopg

    from bench import db

    for attempt in range(30):
        try:
            db.reset(progress)
            return
        except psycopg.errors.InsufficientPrivilege:
            progress(f"the database is busy with autovacuum; waiting (attempt {attempt + 1})")
            time.sleep(10)
    db.reset(progress)


def _measure(month: date, progress: Progress, label: str) -> dict[str, Any]:
    from django.db import connection
    from django.db.models import Count, Q, Sum

    from apps.billing.invoices import periods, services
    from apps.billing.invoices.models import CloseSnapshot, Invoice, InvoiceLine
    from apps.billing.invoices.signals import invoice_finalized
    from apps.billing.models import UsageRecord

    start, end = periods.bounds(month)
    month_rows = UsageRecord.objects.filter(period__startswith__gte=start, period__startswith__lt=end).count()
    before, groups = _bare(start, end)
    progress(f"{label}: bare GROUP BY {groups:,} groups in {before:.2f}s; closing {month:%Y-%m}")
    # The close alone: invoice_finalized's receivers (Stripe collection, another app's work) are timed
    # apart, on the same batches, right after.
    batches: list[list[Any]] = []
    saved = invoice_finalized.receivers
    invoice_finalized.receivers = []
    invoice_finalized.connect(lambda sender, invoice_ids, **kw: batches.append(list(invoice_ids)), weak=False)
    try:
        t0 = time.perf_counter()
        result = services.month_close(month=month, now=end + timedelta(minutes=30))
        ours = time.perf_counter() - t0
    finally:
        invoice_finalized.receivers = saved
    t0 = time.perf_counter()
    for ids in batches:
        invoice_finalized.send(sender=Invoice, invoice_ids=ids)
    receivers = time.perf_counter() - t0
    after, _ = _bare(start, end)
    baseline = (before + after) / 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM billing_usagerecord")
        (total_rows,) = cursor.fetchone()
    invoices = Invoice.objects.filter(month=month)
    lines = InvoiceLine.objects.filter(invoice__month=month)
    expected = UsageRecord.objects.filter(
        period__startswith__gte=start, period__startswith__lt=end
    ).aggregate(s=Sum("quantity_seconds"))["s"]
    billed = lines.filter(usage_month=month).aggregate(s=Sum("quantity_seconds"))["s"]
    snapshots = CloseSnapshot.objects.filter(month=month).aggregate(
        rebuilt=Count("pk", filter=Q(rebuilt=True))
    )
    progress(
        f"{label}: {len(result.invoice_ids)} invoices in {ours:.2f}s ({ratio(ours, baseline)}x); "
        f"bare again {after:.2f}s"
    )
    return {
        "month": f"{month:%Y-%m}",
        "tenants": invoices.values("tenant").distinct().count(),
        "month_rows": month_rows,
        "ledger_rows": total_rows,
        "invoices": len(result.invoice_ids),
        "failed": len(result.failed),
        "lines": lines.count(),
        "adjustment_lines": lines.filter(kind="adjustment").count(),
        "wallets_from_history": snapshots["rebuilt"],
        "ours_seconds": round(ours, 2),
        "ours_ms_per_tenant": round(ours / max(1, len(result.invoice_ids)) * 1000, 3),
        "signal_batches": len(batches),
        "receivers_seconds": round(receivers, 2),
        "baseline_seconds": round(baseline, 3),
        "baseline_runs_seconds": [round(before, 3), round(after, 3)],
        "ratio": ratio(ours, baseline),
        "every_second_invoiced": expected == billed,
    }


def _bare(start: Any, end: Any) -> tuple[float, int]:
    """The bare GROUP BY, with the session settings the close runs with (no JIT, its work_mem): each side
    at its best on this machine."""
    from django.conf import settings
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SELECT set_config('work_mem', %s, true)", [str(settings.BILLING_CLOSE_WORK_MEM)])
        t0 = time.perf_counter()
        cursor.execute(BARE_SQL, [start, end])
        groups = len(cursor.fetchall())
        return time.perf_counter() - t0, groups


def run(
    n: int, progress: Progress, points: tuple[str, ...] = ("main", "history", "size", "fleet")
) -> dict[str, Any]:
    from django.utils import timezone

    from apps.billing.invoices import periods

    month = periods.previous_month(periods.month_of(timezone.now()))
    figures: dict[str, Any] = {}
    if "main" in points:
        _world(_months_before(month, 1), n, INSTANCES_PER_TENANT, progress)
        figures["main"] = _measure(month, progress, "main")
    if "history" in points:
        _world(_months_before(month, HISTORY_MONTHS), n, INSTANCES_PER_TENANT, progress)
        figures["history"] = _measure(month, progress, "history")
    if "size" in points:
        _world(_months_before(month, 1), 5 * n, INSTANCES_PER_TENANT, progress)
        figures["size"] = _measure(month, progress, "size")
    if "fleet" in points:
        tenants = FLEET_INSTANCES // FLEET_PER_TENANT * n // DEFAULT_N
        _world(_months_before(month, 1), tenants, FLEET_PER_TENANT, progress)
        figures["fleet"] = _measure(month, progress, "fleet")
        figures["fleet"]["instances"] = tenants * FLEET_PER_TENANT
    return {**figures, "goals": _goals(figures)}


def _goals(f: dict[str, Any]) -> dict[str, bool]:
    goals: dict[str, bool] = {}
    if "main" in f:
        goals[f"close <= {GOAL_RATIO}x the bare GROUP BY ({f['main']['month_rows']:,} rows)"] = (
            f["main"]["ratio"] <= GOAL_RATIO
        )
    if "history" in f and "main" in f:
        growth = ratio(f["history"]["ours_seconds"], f["main"]["ours_seconds"])
        f["history"]["vs_main"] = growth
        goals[f"after {HISTORY_MONTHS} months of history within {GOAL_HISTORY}x of after 1"] = (
            growth <= GOAL_HISTORY
        )
    if "size" in f and "main" in f:
        f["size"]["growth"] = ratio(f["size"]["ours_seconds"] / f["size"]["month_rows"],
                                    f["main"]["ours_seconds"] / f["main"]["month_rows"])  # fmt: skip
        goals[f"linear: {f['size']['month_rows']:,} rows within {GOAL_RATIO}x their bare GROUP BY"] = (
            f["size"]["ratio"] <= GOAL_RATIO
        )
    if "fleet" in f:
        goals[f"{f['fleet']['instances']:,} instances' month within {GOAL_RATIO}x the bare GROUP BY"] = (
            f["fleet"]["ratio"] <= GOAL_RATIO
        )
    for name, point in f.items():
        goals[f"{name}: every second of the month invoiced, no tenant failed"] = (
            point["every_second_invoiced"] and not point["failed"]
        )
    return goals


def main() -> int:
    args = common.parser(
        "Month close against the bare SQL aggregation.",
        DEFAULT_N,
        "tenants of the main point (2 instances each)",
    ).parse_args()
    return common.run_main("billing_close", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
