"""The SQL of the month close: one aggregation of the month's ledger rows, and the invoice lines made from it.

Stage one reads the month once (the index on the start of the period) and sums the rows per tenant,
resource, meter, unit price and wallet bucket (a row's place between the tenant's grant arrivals, expiries
and credit reversals, apps/billing/wallet.py buckets): every figure the close needs comes from it. Stage two
turns a chunk of tenants' sums into lines: per meter and unit price, a cluster node's per node (its
cluster's id, name and rank as now), plus the earlier months that rows arrived late for, each line billing
the difference between what the ledger says now and what invoices already billed for that month and group.
Amounts are rounded as services.line_amount does: ROUND(seconds x price / 3600, 2), half away from zero
(PostgreSQL's numeric round, as ROUND_HALF_UP), once per line, from the exact seconds.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from apps.billing.invoices.models import Invoice, InvoiceLine
from apps.billing.models import LATE_ROW_LAG, UsageRecord
from apps.catalog.models import InstanceType
from apps.instances.models import Cluster, Instance
from apps.tenants.models import Tenant

USAGE = UsageRecord._meta.db_table
INVOICE = Invoice._meta.db_table
LINE = InvoiceLine._meta.db_table
INSTANCE = Instance._meta.db_table
CLUSTER = Cluster._meta.db_table
INSTANCE_TYPE = InstanceType._meta.db_table
TENANT = Tenant._meta.db_table

# Stage one: a month's rows per tenant, meter and price, and per instance for the nodes of clusters (their
# lines are per node; `nodes` holds every node's instance id as text); for a tenant whose wallet has an event
# inside the month (a grant arriving or expiring, a credit reversal), also per bucket of the wallet's
# draw-down (width_bucket of the row's end among the tenant's thresholds, credits.thresholds): a handful of
# groups a tenant, which place its usage between the events (summed from this table later), where grouping
# by each row's end would make a group of every hour. Other tenants' bucket is NULL. The close reads the
# thresholds from a small analysed table (THRESHOLDS written into closing.THRESHOLDS_TABLE), so the planner
# hashes that side: from a function scan it knows the size but not the distinct tenants, and hashes the
# month's rows instead. The table is an ordinary one so the month's scan stays parallel.
# `recent` counts the rows created after the close's settled_before (CloseSnapshot.recent_rows). For a given
# list of tenants the same rows are found through (tenant, upper(period)): a row never crosses a month
# boundary, so it starts in the month exactly when it ends in (start, end].
_STAGE_ONE = f"""
SELECT u.tenant_id,
       CASE WHEN u.resource_type = 'instance' AND u.resource_id = ANY(%(nodes)s) THEN u.resource_id END
           AS resource_id,
       u.meter, u.unit_price_per_hour AS price,
       width_bucket(upper(u.period), w.th) AS bucket,
       SUM(u.quantity_seconds) AS seconds, SUM(u.amount) AS exact, MIN(lower(u.period)) AS first,
       COUNT(*) FILTER (WHERE u.created_at > %(settled)s) AS recent
FROM {USAGE} u
LEFT JOIN {{thresholds}} w ON w.tenant_id = u.tenant_id
WHERE lower(u.period) >= %(start)s AND lower(u.period) < %(end)s {{tenants}}
GROUP BY 1, 2, 3, 4, 5
"""  # noqa: S608 (table names from the models)
_ONLY_TENANTS = (
    "AND u.tenant_id = ANY(%(tenants)s) AND upper(u.period) > %(start)s AND upper(u.period) <= %(end)s"
)


# Each tenant's wallet thresholds (stage_one_params' arrays) as rows: one cast a tenant.
THRESHOLDS = """
SELECT w.tenant_id, w.th::timestamptz[] AS th
FROM unnest(%(event_tenants)s::uuid[], %(event_thresholds)s::text[]) AS w(tenant_id, th)
"""


def stage_one(*, temp_table: str | None, tenants: bool, thresholds_table: str | None = None) -> str:
    """The aggregation, into a temporary table (the close) or as a subquery (draft_lines); the thresholds
    from `thresholds_table` (THRESHOLDS written there) or THRESHOLDS itself."""
    sql = _STAGE_ONE.format(
        tenants=_ONLY_TENANTS if tenants else "", thresholds=thresholds_table or f"({THRESHOLDS})"
    )
    return f"CREATE TEMP TABLE {temp_table} AS {sql}" if temp_table else sql


def stage_one_params(
    *,
    start: datetime,
    end: datetime,
    settled: datetime,
    thresholds: dict[Any, list[datetime]],
    nodes: list[str],
    tenants: list[Any] | None = None,
) -> dict[str, Any]:
    """`thresholds`: the wallet's bucket thresholds of each tenant with events in the month."""
    return {
        "start": start,
        "end": end,
        "settled": settled,
        "event_tenants": list(thresholds),
        "event_thresholds": [timestamps_literal(th) for th in thresholds.values()],
        "nodes": nodes,
        "tenants": tenants or [],
    }


def node_keys(tenants: list[Any] | None = None) -> list[str]:
    """The ledger resource ids (instance ids as text) of every node of a cluster (of `tenants`)."""
    nodes = Instance.objects.filter(cluster__isnull=False)
    if tenants is not None:
        nodes = nodes.filter(tenant_id__in=tenants)
    return [str(pk) for pk in nodes.values_list("pk", flat=True)]


# The month's wallet usage of tenants with events in it, per bucket of their thresholds (stage one's).
MONTH_BUCKETS = """
SELECT tenant_id, bucket, SUM(exact), SUM(recent) FROM {table}
WHERE tenant_id = ANY(%(tenants)s)
GROUP BY 1, 2
"""


# What the line says: services._describe in SQL (instance type, volume class, object storage), then the
# node's cluster and rank, then the month of an adjustment.
_DESCRIPTION = """
CASE
  WHEN starts_with(g.meter, 'instance_seconds:') THEN
    substr(g.meter, 18)
    || CASE WHEN t.name IS NOT NULL AND t.name <> '' AND t.name <> substr(g.meter, 18)
            THEN ' (' || t.name || ')' ELSE '' END
    || ' instance hours'
  WHEN starts_with(g.meter, 'volume_gib_hours:')
    THEN 'Volume storage hours (' || substr(g.meter, 18) || ' class)'
  WHEN g.meter = 'object_storage_gib_hours' THEN 'Object storage hours (per started GiB)'
  ELSE g.meter
END
|| CASE WHEN g.cluster_id IS NOT NULL
        THEN ', cluster ' || g.cluster_name || ' node ' || COALESCE(g.rank::text, 'None') ELSE '' END
|| CASE WHEN g.usage_month <> %(month)s THEN ' (adjustment for ' || to_char(g.usage_month, 'YYYY-MM') || ')'
        ELSE '' END
"""

# The month's own lines first (as before: meter, first use, price; then the nodes by cluster name, cluster,
# rank, meter), then the adjustments, by month and the same order.
_ORDER = """
(g.usage_month <> %(month)s), g.usage_month, (g.cluster_id IS NOT NULL),
CASE WHEN g.cluster_id IS NULL THEN g.meter END, CASE WHEN g.cluster_id IS NULL THEN g.first END,
CASE WHEN g.cluster_id IS NULL THEN g.price END,
g.cluster_name COLLATE "C", g.cluster_id::text, COALESCE(g.rank, 0), g.meter COLLATE "C", g.first, g.price
"""

# Stage two for a chunk: `usage` (stage one's sums of the month, and the late months' sums read again), the
# nodes among their resources, per line group, less what was billed, with descriptions and positions.
_LINES = f"""
WITH month_usage AS (
    SELECT tenant_id, %(month)s::date AS usage_month, 'instance' AS resource_type, resource_id, meter, price,
           SUM(seconds) AS seconds, SUM(exact) AS exact, MIN(first) AS first
    FROM {{source}}
    GROUP BY tenant_id, resource_id, meter, price
),
late_keys AS (
    SELECT * FROM unnest(%(late_tenants)s::uuid[], %(late_months)s::date[], %(late_meters)s::text[],
                         %(late_prices)s::numeric[]) AS k(tenant_id, usage_month, meter, price)
),
late_months AS (
    SELECT DISTINCT tenant_id, usage_month,
           (usage_month::timestamp AT TIME ZONE 'UTC') AS month_start,
           ((usage_month + interval '1 month')::timestamp AT TIME ZONE 'UTC') AS month_end
    FROM late_keys
),
late_usage AS (
    SELECT u.tenant_id, m.usage_month, u.resource_type, u.resource_id, u.meter,
           u.unit_price_per_hour AS price,
           SUM(u.quantity_seconds) AS seconds, SUM(u.amount) AS exact, MIN(lower(u.period)) AS first
    FROM late_months m
    JOIN {USAGE} u ON u.tenant_id = m.tenant_id AND upper(u.period) > m.month_start
                  AND upper(u.period) <= m.month_end AND lower(u.period) >= m.month_start
    WHERE (u.tenant_id, m.usage_month, u.meter, u.unit_price_per_hour) IN (SELECT * FROM late_keys)
    GROUP BY 1, 2, 3, 4, 5, 6
),
usage AS (SELECT * FROM month_usage UNION ALL SELECT * FROM late_usage),
nodes AS (
    SELECT i.id::text AS resource_id, i.tenant_id, i.rank, c.id AS cluster_id, c.name AS cluster_name
    FROM {INSTANCE} i JOIN {CLUSTER} c ON c.id = i.cluster_id
    WHERE i.tenant_id = ANY(%(chunk)s) AND i.cluster_id IS NOT NULL
),
grouped AS (
    SELECT u.tenant_id, u.usage_month, u.meter, u.price, n.cluster_id, n.cluster_name, n.rank,
           SUM(u.seconds) AS seconds, SUM(u.exact) AS exact, MIN(u.first) AS first
    FROM usage u
    LEFT JOIN nodes n ON u.resource_type = 'instance' AND n.resource_id = u.resource_id
                     AND n.tenant_id = u.tenant_id
    GROUP BY u.tenant_id, u.usage_month, u.meter, u.price, n.cluster_id, n.cluster_name, n.rank
),
billed AS (
    SELECT i.tenant_id, l.usage_month, l.meter, l.unit_price_per_hour AS price, l.cluster_id, l.rank,
           SUM(l.quantity_seconds) AS seconds, SUM(l.amount) AS amount
    FROM {INVOICE} i JOIN {LINE} l ON l.invoice_id = i.id
    WHERE i.tenant_id = ANY(%(chunk)s) AND i.status = 'finalized' AND i.month >= %(earliest)s
      AND l.usage_month >= %(earliest)s AND l.kind <> 'credit'
    GROUP BY 1, 2, 3, 4, 5, 6
),
lines AS (
    SELECT g.*, round(g.seconds * g.price / 3600, 2) AS rated, b.seconds AS billed_seconds,
           b.amount AS billed_amount
    FROM grouped g
    LEFT JOIN billed b ON b.tenant_id = g.tenant_id AND b.usage_month = g.usage_month AND b.meter = g.meter
                      AND b.price = g.price AND b.cluster_id IS NOT DISTINCT FROM g.cluster_id
                      AND b.rank IS NOT DISTINCT FROM g.rank
    WHERE g.seconds - COALESCE(b.seconds, 0) <> 0
)
SELECT g.tenant_id, g.usage_month,
       CASE WHEN g.usage_month = %(month)s THEN 'usage' ELSE 'adjustment' END AS kind,
       g.meter, g.price, g.cluster_id, g.cluster_name, g.rank,
       g.seconds - COALESCE(g.billed_seconds, 0) AS seconds,
       g.rated - COALESCE(g.billed_amount, 0) AS amount,
       -- The exact figure of usage not billed before; for a group billed before, its billed difference.
       CASE WHEN g.billed_seconds IS NULL THEN g.exact ELSE g.rated - g.billed_amount END AS exact,
       {_DESCRIPTION} AS description,
       row_number() OVER (PARTITION BY g.tenant_id ORDER BY {_ORDER}) AS position
FROM lines g
LEFT JOIN {INSTANCE_TYPE} t ON starts_with(g.meter, 'instance_seconds:') AND t.slug = substr(g.meter, 18)
"""  # noqa: S608 (table names from the models)


def lines_sql(*, source: str, into: str | None = None) -> str:
    """Stage two over `source` (stage one's rows of the chunk), into a temporary table or as a query."""
    sql = _LINES.format(source=source)
    return f"CREATE TEMP TABLE {into} ON COMMIT DROP AS {sql}" if into else sql


def lines_params(
    *,
    month: date,
    chunk: list[Any],
    earliest: date,
    late: list[tuple[Any, date, str, Any]],
) -> dict[str, Any]:
    return {
        "month": month,
        "chunk": chunk,
        "earliest": earliest,
        "late_tenants": [k[0] for k in late],
        "late_months": [k[1] for k in late],
        "late_meters": [k[2] for k in late],
        "late_prices": [k[3] for k in late],
    }


# Rows created after `since` (the previous close) for an earlier month, in two parts that never overlap: rows
# created more than LATE_ROW_LAG after their period ended (the partial index usage_late_rows_idx holds only
# those, so the clause repeats its condition), and on-time rows whose period ended within LATE_ROW_LAG before
# `since` (through (tenant, upper(period)); a row never crosses a month boundary, so an earlier month's row
# ends at `start` at the latest). Neither reads the month being closed.
_LAG = f"interval '{int(LATE_ROW_LAG.total_seconds())} seconds'"
_LATE_ROW = f"""
SELECT u.tenant_id, (date_trunc('month', lower(u.period) AT TIME ZONE 'UTC'))::date AS usage_month,
       u.meter, u.unit_price_per_hour, upper(u.period) AS ended, u.created_at
FROM {USAGE} u
WHERE u.tenant_id = ANY(%(tenants)s) AND u.created_at > %(since)s AND lower(u.period) < %(start)s
"""  # noqa: S608 (table names from the models)
LATE_ROWS = f"""
{_LATE_ROW} AND (u.created_at - upper(u.period)) > {_LAG}
UNION ALL
{_LATE_ROW} AND (u.created_at - upper(u.period)) <= {_LAG}
  AND upper(u.period) > %(since)s::timestamptz - {_LAG} AND upper(u.period) <= %(start)s
"""

# The same for tenants never closed before (no snapshot): every earlier row, grouped.
EARLIER_GROUPS = f"""
SELECT u.tenant_id, (date_trunc('month', lower(u.period) AT TIME ZONE 'UTC'))::date AS usage_month,
       u.meter, u.unit_price_per_hour
FROM {USAGE} u
WHERE u.tenant_id = ANY(%(tenants)s) AND lower(u.period) < %(start)s
GROUP BY 1, 2, 3, 4
"""  # noqa: S608 (table names from the models)

# Tenants without usage in the month that have rows of an earlier month created since `since`: candidates
# for an invoice of adjustments only. One probe of (tenant, created_at) per such tenant.
LATE_TENANTS = f"""
SELECT t.id FROM {TENANT} t
WHERE NOT (t.id = ANY(%(known)s))
  AND EXISTS (SELECT 1 FROM {USAGE} u
              WHERE u.tenant_id = t.id AND u.created_at > %(since)s AND lower(u.period) < %(start)s)
"""  # noqa: S608 (table names from the models)

# Wallet usage of the given tenants that stage one does not hold, summed per bucket of each tenant's own
# thresholds, through (tenant, upper(period)): everything ended by `until` (a tenant computed from its
# whole history) or ended in (after, before] (the months between the previous snapshot and this one).
WALLET_USAGE = f"""
SELECT u.tenant_id, COALESCE(width_bucket(upper(u.period), b.th), 0) AS bucket, SUM(u.amount) AS exact,
       COUNT(*) FILTER (WHERE u.created_at > %(settled)s) AS recent
FROM (SELECT unnest(%(tenants)s::uuid[]) AS tenant_id, unnest(%(after)s::timestamptz[]) AS after,
             unnest(%(before)s::timestamptz[]) AS before,
             unnest(%(thresholds)s::text[])::timestamptz[] AS th) b
JOIN {USAGE} u ON u.tenant_id = b.tenant_id AND upper(u.period) > b.after AND upper(u.period) <= b.before
GROUP BY 1, 2
"""  # noqa: S608 (table names from the models)


def timestamps_literal(values: list[datetime]) -> str:
    return "{" + ",".join(f'"{v.isoformat()}"' for v in values) + "}"
