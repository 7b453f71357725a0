"""Billing: close a month for N tenants (default 5,000) with 200 ledger rows each (1,000,000 rows, copied in
bulk) with the project's month close (apps/billing/invoices/services.period_close, what the
close_billing_period command and the monthly task run), against the bare SQL aggregation over the same
rows (one GROUP BY: the least any month close must read).

Rows: per tenant two instances on two meters, one-minute pieces spread over the previous (closed) month,
as the metering writes them.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from bench import common
from bench.common import Progress, ratio

DEFAULT_N = 5000

ROWS_PER_TENANT = 200
METERS = (("instance_seconds:gpu-h100x1", Decimal("2.4900")), ("instance_seconds:cpu-4x", Decimal("0.1200")))

BARE_SQL = """
SELECT tenant_id, meter, unit_price_per_hour, SUM(quantity_seconds), SUM(amount), MIN(lower(period))
FROM billing_usagerecord
WHERE lower(period) >= %s AND lower(period) < %s
GROUP BY tenant_id, meter, unit_price_per_hour
"""


def _rows(tenant_ids: list[Any], start: Any, progress: Progress) -> Any:
    tick = progress.every(len(tenant_ids) * ROWS_PER_TENANT, "ledger rows copied", parts=10)
    done = 0
    per_resource = ROWS_PER_TENANT // len(METERS)
    for t, tenant_id in enumerate(tenant_ids):
        for meter, price in METERS:
            resource = str(uuid.uuid4())
            first = start + timedelta(
                minutes=(t * 7) % (20 * 24 * 60)
            )  # spread over the month's first 20 days
            for k in range(per_resource):
                begin = first + timedelta(minutes=k)
                end = begin + timedelta(minutes=1)
                done += 1
                tick(done)
                yield {
                    "id": f"instance:{resource}:{meter}:{begin:%Y%m%dT%H%M}",
                    "tenant_id": tenant_id,
                    "resource_type": "instance",
                    "resource_id": resource,
                    "meter": meter,
                    "period": f"[{begin.isoformat()},{end.isoformat()})",
                    "quantity_seconds": 60,
                    "unit_price_per_hour": price,
                    "amount": (price * 60 / 3600).quantize(Decimal("0.000001")),
                    "kind": "usage",
                    "created_at": end,
                }


def bare(start: Any, end: Any) -> tuple[float, int]:
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(BARE_SQL, [start, end])
        groups = len(cursor.fetchall())
    return time.perf_counter() - t0, groups


def run(n: int, progress: Progress) -> dict[str, Any]:
    from django.db.models import Sum
    from django.utils import timezone

    from apps.billing.invoices import periods
    from apps.billing.invoices.models import Invoice
    from apps.billing.invoices.services import period_close
    from apps.billing.models import UsageRecord
    from apps.tenants.models import Tenant
    from bench import db, seed

    db.reset(progress)
    seed.catalog()
    month = periods.previous_month(periods.month_of(timezone.now()))
    start, end = periods.bounds(month)
    tenant_ids = [uuid.uuid4() for _ in range(n)]
    seed.copy_rows(
        Tenant,
        (
            {
                "id": pk,
                "name": f"Bench {i}",
                "slug": f"bench-bill-{i}",
                "status": "active",
                "created_at": start - timedelta(days=30),
            }
            for i, pk in enumerate(tenant_ids)
        ),
    )
    t0 = time.perf_counter()
    rows = seed.copy_rows(UsageRecord, _rows(tenant_ids, start, progress))
    db.analyze()
    progress(f"{n} tenants, {rows} ledger rows in {month:%Y-%m} copied in {time.perf_counter() - t0:.0f}s")

    before, groups = bare(start, end)
    progress(f"bare SQL aggregation: {groups} groups in {before:.2f}s; closing the month")
    t0 = time.perf_counter()
    invoices = period_close(month=month)
    ours = time.perf_counter() - t0
    after, _ = bare(start, end)
    baseline = (before + after) / 2
    progress(f"month closed: {len(invoices)} invoices in {ours:.1f}s; bare SQL again {after:.2f}s")

    expected = UsageRecord.objects.aggregate(s=Sum("quantity_seconds"))["s"]
    billed = Invoice.objects.filter(month=month).aggregate(s=Sum("lines__quantity_seconds"))["s"]
    return {
        "tenants": n,
        "ledger_rows": rows,
        "month": f"{month:%Y-%m}",
        "invoices": len(invoices),
        "ours_seconds": round(ours, 2),
        "ours_ms_per_tenant": round(ours / n * 1000, 2),
        "baseline_seconds": round(baseline, 3),
        "baseline_runs_seconds": [round(before, 3), round(after, 3)],
        "ratio": ratio(ours, baseline),
        "goals": {
            "one invoice per tenant": len(invoices) == n,
            "every ledger second invoiced": expected == billed,
        },
    }


def main() -> int:
    args = common.parser(
        "Month close against the bare SQL aggregation.", DEFAULT_N, f"tenants ({ROWS_PER_TENANT} rows each)"
    ).parse_args()
    return common.run_main("billing_close", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
