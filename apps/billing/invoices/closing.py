"""The month close, set-based (docs/billing.md "Invoices").

One aggregation reads the month's ledger rows once (aggregation.py, stage one, into a temporary table).
Tenants are then closed in chunks, one transaction each: their lines are inserted with INSERT ... SELECT from
that aggregation (plus adjustments for rows of earlier months that arrived after those were invoiced), the
wallet at the end of the month is carried on from the previous close's snapshot with the month's grants,
reversals and usage, invoices are numbered by nextval in the insert, audited in one insert, and
`invoice_finalized` is sent on commit. A chunk that fails is retried tenant by tenant, so one bad tenant
holds back no other. Closes run one at a time (a PostgreSQL advisory lock): closing again returns the
finalized invoices untouched.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import wallet
from apps.billing.invoices import aggregation, credits, periods
from apps.billing.invoices.models import (
    NUMBER_PREFIX,
    NUMBER_SEQUENCE,
    CloseSnapshot,
    Invoice,
    InvoiceStatus,
    LineKind,
    PeriodClose,
)
from apps.billing.invoices.signals import invoice_finalized
from apps.billing.models import CreditGrant, CreditReversal
from apps.billing.snapshots import state_from_json, state_to_json
from apps.core import request_context
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

CHUNK = 500  # tenants per transaction
# Closes run one at a time: a close reads what earlier closes billed (adjustments, carried credit).
LOCK_KEY = 22_0001
USAGE_TABLE = "billing_close_usage"
THRESHOLDS_TABLE = "billing_close_thresholds"
LINES_TABLE = "billing_close_lines"
CARRIED = "credit_carried"
RETURNED = "credit_returned"
ZERO = Decimal("0")
NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass
class CloseResult:
    invoice_ids: list[Any]  # the month's invoices of the tenants closed (or found finalized)
    failed: dict[Any, str] = field(default_factory=dict)  # tenant id -> the error

    @property
    def invoices(self) -> list[Invoice]:
        return list(
            Invoice.objects.filter(pk__in=self.invoice_ids).select_related("tenant").order_by("tenant__slug")
        )


@dataclass(frozen=True)
class _Previous:
    """The fields of a tenant's previous CloseSnapshot that the next close reads."""

    tenant_id: Any
    month: date
    cutoff: datetime
    settled_before: datetime
    state: dict[str, Any]
    recent_rows: int
    recent_reversals: int
    carried_credit: Decimal
    invoice_number: str | None


@dataclass
class _Month:
    """What every chunk of one close shares."""

    month: date
    start: datetime
    end: datetime
    now: datetime
    settled: datetime
    points: dict[Any, list[datetime]]  # tenant -> the month's wallet boundaries (stage one's buckets)
    closed_months: set[date]  # closed for every tenant (PeriodClose)
    required: set[Any]  # tenants invoiced even with nothing to bill
    snapshots: dict[Any, _Previous] = field(default_factory=dict)  # each tenant's previous close
    late: dict[Any, list[tuple[Any, date, str, Any]]] = field(default_factory=dict)  # groups to bill again
    held: dict[Any, int] = field(default_factory=dict)  # late rows within the previous snapshot's range
    held_recent: dict[Any, int] = field(default_factory=dict)  # of those, created after settled


def close_month(
    *,
    month: date,
    now: datetime,
    tenant_ids: list[Any] | None = None,
    chunk_size: int = CHUNK,
    retry: bool = True,
) -> CloseResult:
    """Close `month` for `tenant_ids` (each invoiced, even at zero) or for every tenant with ledger rows in
    it or late rows for a closed month (then a PeriodClose is recorded). `retry`: a failed chunk is closed
    again tenant by tenant (otherwise the error is raised)."""
    start, end = periods.bounds(month)
    settled = now - timedelta(seconds=settings.BILLING_SNAPSHOT_MARGIN_SECONDS)
    # Without JIT: compiling cost more than it saved in every statement of the close (measured on a ledger
    # of 14 million rows: the late-row scan, whose partial index the planner cannot size, 1 s of compiling
    # against 20 ms of reading; the month's aggregation 0.1 s more with it).
    with _one_close_at_a_time(), connection.cursor() as cursor, _setting(cursor, "jit", "off"):
        points = _month_points(start, end)
        cursor.execute(f"DROP TABLE IF EXISTS {USAGE_TABLE}")
        params = aggregation.stage_one_params(
            start=start,
            end=end,
            settled=settled,
            thresholds={t: credits.thresholds(p) for t, p in points.items()},
            nodes=aggregation.node_keys(tenant_ids),
            tenants=tenant_ids,
        )
        # An ordinary (unlogged) table, analysed: the planner then knows how few tenants it holds and hashes
        # it, and parallel workers can read it, so the month is still scanned in parallel (a temporary table
        # made the aggregation run in one process: 35.3 s against 18.7 s at 5x the main point).
        cursor.execute(f"DELETE FROM {THRESHOLDS_TABLE}")  # noqa: S608 (a constant name)
        cursor.execute(f"INSERT INTO {THRESHOLDS_TABLE} (tenant_id, th) {aggregation.THRESHOLDS}", params)
        cursor.execute(f"ANALYZE {THRESHOLDS_TABLE}")
        # A hash for the grouping even when the planner, which cannot tell how few groups there are, expects
        # one a row: its sort of the month spilled to disk (28.7 s against 18.9 s at 11 million rows).
        with (
            _setting(cursor, "work_mem", str(settings.BILLING_CLOSE_WORK_MEM)),
            _setting(cursor, "enable_sort", "off"),
        ):
            cursor.execute(
                aggregation.stage_one(
                    temp_table=USAGE_TABLE, tenants=tenant_ids is not None, thresholds_table=THRESHOLDS_TABLE
                ),
                params,
            )
        cursor.execute(f"DELETE FROM {THRESHOLDS_TABLE}")  # noqa: S608 (a constant name)
        cursor.execute(f"CREATE INDEX ON {USAGE_TABLE} (tenant_id)")
        try:
            if tenant_ids is None:
                cursor.execute(f"SELECT DISTINCT tenant_id FROM {USAGE_TABLE}")  # noqa: S608 (table names from the models)
                with_usage = [row[0] for row in cursor.fetchall()]
                targets = with_usage + _late_only_tenants(cursor, with_usage, start=start)
                required = set(with_usage)
            else:
                targets, required = list(tenant_ids), set(tenant_ids)
            ctx = _Month(
                month=month,
                start=start,
                end=end,
                now=now,
                settled=settled,
                points=points,
                closed_months=set(PeriodClose.objects.values_list("month", flat=True)),
                required=required,
            )
            _prepare(cursor, targets, ctx)
            result = _close_all(_by_slug(targets), ctx, chunk_size, retry)
        finally:
            cursor.execute(f"DROP TABLE IF EXISTS {USAGE_TABLE}")
    if tenant_ids is None:
        PeriodClose.objects.create(
            month=month,
            started_at=now,
            finished_at=max(now, timezone.now()),
            invoices=len(result.invoice_ids),
            failed_tenants=[str(t) for t in result.failed],
        )
    return result


@contextmanager
def _one_close_at_a_time() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


@contextmanager
def _setting(cursor: Any, name: str, value: str) -> Iterator[None]:
    """`name` set to `value` for the statements inside, the session's own value restored after."""
    cursor.execute("SELECT current_setting(%s), set_config(%s, %s, false)", [name, name, value])
    (before, _) = cursor.fetchone()
    failed = True
    try:
        yield
        failed = False
    finally:
        # After a failure inside a transaction the restore cannot run, and need not: the rollback undoes the
        # set_config with the rest.
        try:
            cursor.execute("SELECT set_config(%s, %s, false)", [name, before])
        except DatabaseError:
            if not failed:
                raise


def _by_slug(tenant_ids: list[Any]) -> list[Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT id FROM {Tenant._meta.db_table} WHERE id = ANY(%s) ORDER BY slug COLLATE "C"',  # noqa: S608 (table names from the models)
            [tenant_ids],
        )
        return [row[0] for row in cursor.fetchall()]


def _late_only_tenants(cursor: Any, with_usage: list[Any], *, start: datetime) -> list[Any]:
    """Tenants without usage in the month but with rows created since the previous close began: they may
    have adjustments to bill."""
    last = PeriodClose.objects.order_by("-started_at").values_list("started_at", flat=True).first()
    since = last - timedelta(seconds=settings.BILLING_SNAPSHOT_MARGIN_SECONDS) if last else NEVER
    cursor.execute(aggregation.LATE_TENANTS, {"known": with_usage, "since": since, "start": start})
    return [row[0] for row in cursor.fetchall()]


def _month_points(start: datetime, end: datetime) -> dict[Any, list[datetime]]:
    """Per tenant, the instants within the month where its wallet's draw-down can change (grants arriving
    or expiring, credit reversals), with the month's start and end; tenants with none are left out (all
    their month's usage is one bucket). A superset is harmless: finer buckets draw down the same."""
    found: dict[Any, set[datetime]] = defaultdict(set)
    inside = Q(created_at__gt=start, created_at__lte=end) | Q(expires_at__gt=start, expires_at__lte=end)
    for tenant_id, created_at, expires_at in CreditGrant.objects.filter(inside).values_list(
        "tenant_id", "created_at", "expires_at"
    ):
        found[tenant_id].update(t for t in (created_at, expires_at) if t is not None and start < t <= end)
    for tenant_id, created_at in CreditReversal.objects.filter(
        created_at__gt=start, created_at__lte=end
    ).values_list("tenant_id", "created_at"):
        found[tenant_id].add(created_at)
    return {t: sorted(p | {start, end}) for t, p in found.items()}


def _prepare(cursor: Any, targets: list[Any], ctx: _Month) -> None:
    """What every chunk needs from before: each tenant's previous snapshot, and the rows of earlier months
    created since it settled (all of them for a tenant never closed), read once for the whole close."""
    cursor.execute(
        f"""
        SELECT DISTINCT ON (s.tenant_id) s.tenant_id, s.month, s.cutoff, s.settled_before, s.state,
               s.recent_rows, s.recent_reversals, s.carried_credit, i.number
        FROM {CloseSnapshot._meta.db_table} s JOIN {aggregation.INVOICE} i ON i.id = s.invoice_id
        WHERE s.tenant_id = ANY(%s) AND s.month < %s
        ORDER BY s.tenant_id, s.month DESC
        """,  # noqa: S608 (table names from the models)
        [targets, ctx.month],
    )
    ctx.snapshots = {}
    for tenant_id, month, cutoff, settled, state, rows, reversals, carried, number in cursor.fetchall():
        ctx.snapshots[tenant_id] = _Previous(
            tenant_id=tenant_id,
            month=month,
            cutoff=cutoff,
            settled_before=settled,
            state=json.loads(state) if isinstance(state, str) else state,  # jsonb comes back as text
            recent_rows=rows,
            recent_reversals=reversals,
            carried_credit=carried,
            invoice_number=number,
        )
    invoiced: dict[Any, set[date]] = defaultdict(set)
    cursor.execute(
        f"SELECT tenant_id, month FROM {aggregation.INVOICE} "  # noqa: S608 (table names from the models)
        "WHERE tenant_id = ANY(%s) AND month < %s AND status = 'finalized'",
        [targets, ctx.month],
    )
    for tenant_id, month in cursor.fetchall():
        invoiced[tenant_id].add(month)
    keys: dict[Any, set[tuple[Any, date, str, Any]]] = defaultdict(set)

    def touch(tenant_id: Any, month: date, meter: str, price: Any) -> None:
        if month in ctx.closed_months or month in invoiced[tenant_id]:
            keys[tenant_id].add((tenant_id, month, meter, price))

    by_since: dict[datetime, list[Any]] = defaultdict(list)
    for tenant_id in targets:
        if tenant_id in ctx.snapshots:
            by_since[ctx.snapshots[tenant_id].settled_before].append(tenant_id)
    held: dict[Any, int] = defaultdict(int)
    recent: dict[Any, int] = defaultdict(int)
    for since, tenants in by_since.items():
        cursor.execute(aggregation.LATE_ROWS, {"tenants": tenants, "since": since, "start": ctx.start})
        for tenant_id, month, meter, price, ended, created_at in cursor.fetchall():
            if ended <= ctx.snapshots[tenant_id].cutoff:
                held[tenant_id] += 1
                recent[tenant_id] += created_at > ctx.settled
            touch(tenant_id, month, meter, price)
    first = [t for t in targets if t not in ctx.snapshots]
    if first:
        cursor.execute(aggregation.EARLIER_GROUPS, {"tenants": first, "start": ctx.start})
        for row in cursor.fetchall():
            touch(*row)
    ctx.late = {t: sorted(k, key=str) for t, k in keys.items()}
    ctx.held, ctx.held_recent = dict(held), dict(recent)


def _close_all(targets: list[Any], ctx: _Month, chunk_size: int, retry: bool) -> CloseResult:
    closed: list[Any] = []
    failed: dict[Any, str] = {}
    for index in range(0, len(targets), max(1, chunk_size)):
        chunk = targets[index : index + chunk_size]
        try:
            closed += _close_chunk(chunk, ctx)
        except Exception:
            if not retry:
                raise
            logger.exception("billing close %s: a chunk of %d tenants failed; closing them one by one",
                             f"{ctx.month:%Y-%m}", len(chunk))  # fmt: skip
            for tenant_id in chunk:
                try:
                    closed += _close_chunk([tenant_id], ctx)
                except Exception as exc:
                    logger.exception("billing close %s: tenant %s failed", f"{ctx.month:%Y-%m}", tenant_id)
                    failed[tenant_id] = f"{type(exc).__name__}: {exc}"
    return CloseResult(invoice_ids=closed, failed=failed)


def _close_chunk(chunk: list[Any], ctx: _Month) -> list[Any]:
    """Close the month for these tenants in one transaction; the ids of their invoices."""
    repeatable = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if repeatable:  # every statement of the chunk reads the same ledger
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _ChunkClose(cursor, chunk, ctx).run()


class _ChunkClose:
    def __init__(self, cursor: Any, chunk: list[Any], ctx: _Month) -> None:
        self.cursor = cursor
        self.ctx = ctx
        self.chunk = chunk

    def run(self) -> list[Any]:
        ctx, cursor = self.ctx, self.cursor
        cursor.execute(
            f"SELECT id, tenant_id, status FROM {aggregation.INVOICE} "  # noqa: S608 (table names from the models)
            "WHERE tenant_id = ANY(%s) AND month = %s",
            [self.chunk, ctx.month],
        )
        existing = {tenant_id: (pk, status) for pk, tenant_id, status in cursor.fetchall()}
        done = [pk for pk, status in existing.values() if status == InvoiceStatus.FINALIZED]
        todo = [t for t in self.chunk if existing.get(t, (None, None))[1] != InvoiceStatus.FINALIZED]
        drafts = [pk for pk, status in existing.values() if status != InvoiceStatus.FINALIZED]
        if drafts:  # left by an interrupted close: rebuilt under the same id
            cursor.execute(f"DELETE FROM {aggregation.LINE} WHERE invoice_id = ANY(%s)", [drafts])  # noqa: S608 (table names from the models)
            cursor.execute(f"DELETE FROM {aggregation.INVOICE} WHERE id = ANY(%s)", [drafts])  # noqa: S608 (table names from the models)
        if not todo:
            return done
        self.todo = todo
        self.snapshots = {t: ctx.snapshots[t] for t in todo if t in ctx.snapshots}
        late_keys = [key for t in todo for key in ctx.late.get(t, [])]
        self.stale = {t for t, snap in self.snapshots.items() if ctx.held.get(t, 0) > snap.recent_rows}
        cursor.execute(f"DROP TABLE IF EXISTS {LINES_TABLE}")
        earliest = min([ctx.month, *(k[1] for k in late_keys)])
        cursor.execute(
            aggregation.lines_sql(source=f"{USAGE_TABLE} WHERE tenant_id = ANY(%(chunk)s)", into=LINES_TABLE),
            aggregation.lines_params(month=ctx.month, chunk=todo, earliest=earliest, late=late_keys),
        )
        cursor.execute(
            f"SELECT tenant_id, SUM(amount), SUM(exact), COUNT(*) FROM {LINES_TABLE} GROUP BY tenant_id"  # noqa: S608 (table names from the models)
        )
        sums = {t: (billed, exact, count) for t, billed, exact, count in cursor.fetchall()}
        carried_in = self._carried_in()
        billable = [t for t in todo if t in ctx.required or t in sums]
        if not billable:
            cursor.execute(f"DROP TABLE {LINES_TABLE}")
            return done
        states, rebuilt, recent_rows, recent_reversals = self._wallets(billable)
        rows = []
        for tenant_id in billable:
            billed, exact, count = sums.get(tenant_id, (ZERO, ZERO, 0))
            carry_in = carried_in.get(tenant_id, (ZERO, None, ""))
            settlement = credits.settle(
                billed=billed,
                exact=exact,
                carried_in=carry_in[0],
                balance=states[tenant_id].drawdown().balance,
            )
            credit_lines = self._credit_lines(carry_in, settlement)
            subtotal = billed + sum((line[2] for line in credit_lines), ZERO)
            rows.append((tenant_id, subtotal, settlement, credit_lines, count))
        ids = {row[0]: existing[row[0]][0] if row[0] in existing else uuid.uuid4() for row in rows}
        # The lines first, then their invoices, inserted finalized (the lines' foreign key is checked at
        # commit): no UPDATE pass over the invoices, and nothing is ever added to a finalized invoice.
        self._insert_lines(ids, rows)
        cursor.execute(f"DROP TABLE {LINES_TABLE}")
        new_ids = _finalize_and_audit(
            cursor,
            [
                {
                    "id": ids[t],
                    "tenant_id": t,
                    "subtotal": subtotal,
                    "credits": settlement.credits_applied,
                    "ord": n,
                }
                for n, (t, subtotal, settlement, _, _) in enumerate(rows)
            ],
            ctx,
        )
        tenants = [row[0] for row in rows]
        cursor.execute(
            f"""
            INSERT INTO {CloseSnapshot._meta.db_table} (tenant_id, month, invoice_id, cutoff, started_at,
                settled_before, state, recent_rows, recent_reversals, rebuilt, carried_credit)
            SELECT x.t, %(month)s, x.i, %(cutoff)s, %(started)s, %(settled)s, x.st, x.rr, x.rv, x.rb, x.cc
            FROM json_to_recordset(%(rows)s::json)
                 AS x(t uuid, i uuid, st jsonb, rr int, rv int, rb boolean, cc numeric)
            """,  # noqa: S608 (table names from the models)
            {
                "month": ctx.month,
                "cutoff": ctx.end,
                "started": ctx.now,
                "settled": ctx.settled,
                "rows": _json(
                    {
                        "t": t,
                        "i": ids[t],
                        "st": state_to_json(states[t]),
                        "rr": recent_rows[t],
                        "rv": recent_reversals[t],
                        "rb": t in rebuilt,
                        "cc": row[2].carried_out,
                    }
                    for t, row in zip(tenants, rows, strict=True)
                ),
            },
        )
        transaction.on_commit(lambda: invoice_finalized.send(sender=Invoice, invoice_ids=new_ids))
        return done + new_ids

    # --- what the previous closes left -------------------------------------------------------------

    def _carried_in(self) -> dict[Any, tuple[Decimal, date | None, str]]:
        """Credit the previous invoice carried out and no invoice has taken off yet."""
        owed = {t: s for t, s in self.snapshots.items() if s.carried_credit > 0}
        if not owed:
            return {}
        self.cursor.execute(
            f"""
            SELECT i.tenant_id, SUM(l.amount) FROM {aggregation.INVOICE} i
            JOIN {aggregation.LINE} l ON l.invoice_id = i.id
            JOIN unnest(%s::uuid[], %s::date[]) AS o(tenant_id, month)
              ON o.tenant_id = i.tenant_id AND i.month >= o.month AND l.usage_month = o.month
            WHERE i.status = 'finalized' AND l.meter = %s
            GROUP BY i.tenant_id
            """,  # noqa: S608 (table names from the models)
            [list(owed), [s.month for s in owed.values()], CARRIED],
        )
        left = dict(self.cursor.fetchall())
        return {
            t: (left[t], s.month, s.invoice_number or "") for t, s in owed.items() if left.get(t, ZERO) > 0
        }

    def _credit_lines(
        self, carry_in: tuple[Decimal, date | None, str], settlement: credits.Settlement
    ) -> list[tuple[date, str, Decimal, str]]:
        """(usage_month, meter, amount, description) of the lines that move credit, not usage."""
        lines = []
        amount, from_month, number = carry_in
        if amount > 0 and from_month is not None:
            lines.append((from_month, CARRIED, -amount, f"Credit carried from invoice {number}"))
        if settlement.returned > 0:
            lines.append(
                (self.ctx.month, RETURNED, settlement.returned,
                 "Reversed usage that prepaid credit had paid: the credit is back in the wallet")
            )  # fmt: skip
        if settlement.carried_out > 0:
            lines.append(
                (self.ctx.month, CARRIED, settlement.carried_out, "Credit carried to the next invoice")
            )
        return lines

    # --- the wallet at the end of the month ------------------------------------------------------------

    def _wallets(
        self, tenants: list[Any]
    ) -> tuple[dict[Any, wallet.State], set[Any], dict[Any, int], dict[Any, int]]:
        """The draw-down state at the end of the month per tenant: carried on from the previous snapshot
        with the grants, reversals and usage since (stage one's buckets; the months between, if the tenant
        was not closed in them), or from the whole history (no snapshot, or one that missed a late row,
        grant or reversal). Also which were rebuilt, and the rows and reversals created after settled."""
        ctx = self.ctx
        carried = {t: self.snapshots[t] for t in tenants if t in self.snapshots and t not in self.stale}
        grants, reversals = self._grants_and_reversals(tenants, carried)
        starts = {t: state_from_json(snap.state) for t, snap in carried.items()}
        missed = [
            t
            for t, snap in carried.items()
            if any(g.granted_at <= snap.cutoff and g.key not in starts[t].remaining for g in grants[t])
            or sum(r.at <= snap.cutoff for r in reversals[t]) > snap.recent_reversals
        ]
        for tenant_id in missed:  # a grant or reversal dated before the snapshot that it does not hold
            del carried[tenant_id], starts[tenant_id]
        if missed:
            again_grants, again_reversals = self._grants_and_reversals(missed, {})
            grants.update(again_grants)
            reversals.update(again_reversals)
        rebuild = [t for t in tenants if t not in carried]

        inputs = {
            t: credits.WalletInputs(
                start=starts.get(t),
                grants=grants[t],
                reversals=reversals[t],
            )
            for t in tenants
        }
        recent: dict[Any, int] = defaultdict(int, {t: ctx.held_recent.get(t, 0) for t in carried})
        self._month_usage(list(carried), inputs, recent)
        # Usage the snapshot and stage one do not hold: between the snapshot and the month, or everything.
        spans: dict[Any, tuple[datetime, datetime]] = {t: (NEVER, ctx.end) for t in rebuild}
        spans.update({t: (s.cutoff, ctx.start) for t, s in carried.items() if s.cutoff < ctx.start})
        if spans:
            self._usage_between(spans, inputs, recent)
        states = {t: credits.close_state(inputs[t], until=ctx.end) for t in tenants}
        fresh_reversals = {t: sum(ctx.settled < r.at <= ctx.end for r in reversals[t]) for t in tenants}
        return states, set(rebuild), recent, fresh_reversals

    def _month_usage(
        self, tenants: list[Any], inputs: dict[Any, credits.WalletInputs], recent: dict[Any, int]
    ) -> None:
        """The month's usage from stage one: one amount in the middle of the month for a tenant without
        wallet events in it, per bucket between its events for the others."""
        ctx = self.ctx
        plain = [t for t in tenants if t not in ctx.points]
        self.cursor.execute(
            f"SELECT tenant_id, SUM(exact), SUM(recent) FROM {USAGE_TABLE} "  # noqa: S608 (table names from the models)
            "WHERE tenant_id = ANY(%s) GROUP BY 1",
            [plain],
        )
        midpoint = ctx.start + (ctx.end - ctx.start) // 2
        for tenant_id, exact, fresh in self.cursor.fetchall():
            inputs[tenant_id].usage.append(wallet.Usage(midpoint, exact))
            recent[tenant_id] += fresh
        events = [t for t in tenants if t in ctx.points]
        self.cursor.execute(aggregation.MONTH_BUCKETS.format(table=USAGE_TABLE), {"tenants": events})
        for tenant_id, bucket, exact, fresh in self.cursor.fetchall():
            inputs[tenant_id].usage.append(
                wallet.Usage(credits.bucket_at(ctx.points[tenant_id], bucket), exact)
            )
            recent[tenant_id] += fresh

    def _grants_and_reversals(
        self, tenants: list[Any], carried: dict[Any, _Previous]
    ) -> tuple[dict[Any, list[wallet.Grant]], dict[Any, list[wallet.Reversal]]]:
        """Grants and reversals dated by the end of the month: those a snapshot may lack (dated after its
        cutoff, or created after it settled) for the tenants carried on, all of them for the others."""
        since = [
            min(carried[t].cutoff, carried[t].settled_before) if t in carried else NEVER for t in tenants
        ]
        grants: dict[Any, list[wallet.Grant]] = {t: [] for t in tenants}
        self.cursor.execute(
            f"""
            SELECT g.tenant_id, g.id, g.amount, g.created_at, g.expires_at FROM {CreditGrant._meta.db_table} g
            JOIN unnest(%s::uuid[], %s::timestamptz[]) AS b(tenant_id, since)
              ON g.tenant_id = b.tenant_id AND g.created_at > b.since
            WHERE g.created_at <= %s ORDER BY g.created_at, g.id
            """,  # noqa: S608 (table names from the models)
            [tenants, since, self.ctx.end],
        )
        for tenant_id, pk, amount, created_at, expires_at in self.cursor.fetchall():
            grants[tenant_id].append(wallet.Grant(str(pk), amount, created_at, expires_at))
        reversals: dict[Any, list[wallet.Reversal]] = {t: [] for t in tenants}
        self.cursor.execute(
            f"""
            SELECT r.tenant_id, r.grant_id, r.amount, r.created_at FROM {CreditReversal._meta.db_table} r
            JOIN unnest(%s::uuid[], %s::timestamptz[]) AS b(tenant_id, since)
              ON r.tenant_id = b.tenant_id AND r.created_at > b.since
            WHERE r.created_at <= %s ORDER BY r.created_at, r.sequence, r.id
            """,  # noqa: S608 (table names from the models)
            [tenants, since, self.ctx.end],
        )
        for tenant_id, grant_id, amount, created_at in self.cursor.fetchall():
            reversals[tenant_id].append(wallet.Reversal(created_at, amount, str(grant_id)))
        return grants, reversals

    def _usage_between(
        self,
        spans: dict[Any, tuple[datetime, datetime]],
        inputs: dict[Any, credits.WalletInputs],
        recent: dict[Any, int],
    ) -> None:
        """Ledger usage ended in each tenant's (after, before], summed per bucket of its boundaries there."""
        points: dict[Any, list[datetime]] = {}
        for tenant_id, (after, before) in spans.items():
            got = inputs[tenant_id]
            carried = got.start.active if got.start is not None else ()
            moments = {before} | ({after} if after != NEVER else set())
            for g in [*carried, *got.grants]:
                moments.update(
                    t for t in (g.granted_at, g.expires_at) if t is not None and after < t <= before
                )
            moments.update(r.at for r in got.reversals if after < r.at <= before)
            points[tenant_id] = sorted(moments)
        tenants = list(spans)
        self.cursor.execute(
            aggregation.WALLET_USAGE,
            {
                "tenants": tenants,
                "after": [spans[t][0] for t in tenants],
                "before": [spans[t][1] for t in tenants],
                "thresholds": [
                    aggregation.timestamps_literal(credits.thresholds(points[t])) for t in tenants
                ],
                "settled": self.ctx.settled,
            },
        )
        for tenant_id, bucket, exact, fresh in self.cursor.fetchall():
            inputs[tenant_id].usage.append(wallet.Usage(credits.bucket_at(points[tenant_id], bucket), exact))
            recent[tenant_id] += fresh

    # --- writing -----------------------------------------------------------------------------------------

    def _insert_lines(self, ids: dict[Any, Any], rows: list[Any]) -> None:
        """The usage and adjustment lines with INSERT ... SELECT from the chunk's aggregation; the credit
        lines after them."""
        credit = [
            (ids[tenant_id], count + n, month, meter, amount, description)
            for tenant_id, _, _, lines, count in rows
            for n, (month, meter, amount, description) in enumerate(lines, start=1)
        ]
        columns = (
            "invoice_id, position, kind, usage_month, meter, description, quantity_seconds, "
            "unit_price_per_hour, amount, cluster_id, cluster_name, rank"
        )
        self.cursor.execute(
            f"""
            INSERT INTO {aggregation.LINE} ({columns})
            SELECT i.id, l.position, l.kind, l.usage_month, l.meter, l.description, l.seconds, l.price,
                   l.amount, l.cluster_id, COALESCE(l.cluster_name, ''), l.rank
            FROM {LINES_TABLE} l JOIN unnest(%(tenants)s::uuid[], %(ids)s::uuid[]) AS i(tenant_id, id)
              ON i.tenant_id = l.tenant_id
            UNION ALL
            SELECT c.invoice_id, c.position, %(credit)s, c.usage_month, c.meter, c.description, 0, 0,
                   c.amount,
                   NULL, '', NULL
            FROM unnest(%(c_ids)s::uuid[], %(c_positions)s::int[], %(c_months)s::date[], %(c_meters)s::text[],
                        %(c_amounts)s::numeric[], %(c_descriptions)s::text[])
                 AS c(invoice_id, position, usage_month, meter, amount, description)
            """,  # noqa: S608 (table names from the models)
            {
                "tenants": list(ids),
                "ids": list(ids.values()),
                "credit": LineKind.CREDIT.value,
                "c_ids": [c[0] for c in credit],
                "c_positions": [c[1] for c in credit],
                "c_months": [c[2] for c in credit],
                "c_meters": [c[3] for c in credit],
                "c_amounts": [c[4] for c in credit],
                "c_descriptions": [c[5] for c in credit],
            },
        )


def _json(rows: Any) -> str:
    """Rows for json_to_recordset: one parameter for a chunk's rows (Decimal and UUID as text, exact)."""
    return json.dumps(list(rows), default=str)


def _finalize_and_audit(cursor: Any, invoices: list[dict[str, Any]], ctx: _Month) -> list[Any]:
    """Insert the chunk's invoices finalized, numbered by nextval in their order (`ord`: tenant order), and
    write, in the same statement, the audit row audit_record writes for each (actor: the system;
    apps/audit). Returns their ids."""
    request = request_context.current()
    cursor.execute(
        f"""
        WITH finalized AS (
            INSERT INTO {aggregation.INVOICE} (id, tenant_id, month, period_start, period_end, status, number,
                currency, subtotal, credits_applied, total, created_at, finalized_at)
            SELECT v.id, v.tenant_id, %(month_date)s, %(start)s, %(end)s, 'finalized',
                   %(prefix)s || lpad(v.n::text, greatest(6, length(v.n::text)), '0'), 'USD',
                   v.subtotal, v.credits, v.subtotal - v.credits, %(now)s, %(now)s
            FROM (SELECT s.*, nextval(%(sequence)s) AS n
                  FROM (SELECT * FROM json_to_recordset(%(rows)s::json)
                                AS r(id uuid, tenant_id uuid, subtotal numeric, credits numeric, ord int)
                        ORDER BY ord OFFSET 0) s) v
            RETURNING id, tenant_id, number, subtotal, credits_applied, total
        ), audited AS (
            INSERT INTO {AuditEvent._meta.db_table} (tenant_id, actor_user_id, actor_token_id, actor_label,
                via,
                action, target_type, target_id, changes, metadata, ip, request_id, created_at)
            SELECT tenant_id, NULL, NULL, %(label)s, %(via)s, 'invoice.finalized', %(target_type)s, id::text,
                   '{{}}'::jsonb,
                   jsonb_build_object('number', number, 'month', %(month)s, 'subtotal', subtotal::text,
                                      'credits_applied', credits_applied::text, 'total', total::text),
                   %(ip)s, %(request_id)s, %(created)s
            FROM finalized
        )
        SELECT id FROM finalized
        """,  # noqa: S608 (table names from the models)
        {
            "now": ctx.now,
            "month_date": ctx.month,
            "start": ctx.start,
            "end": ctx.end,
            "prefix": f"{NUMBER_PREFIX}-{ctx.month:%Y-%m}-",
            "sequence": NUMBER_SEQUENCE,
            "rows": _json(invoices),
            "label": f"system:{request.via}",
            "via": request.via,
            "target_type": Invoice._meta.label_lower,
            "month": f"{ctx.month:%Y-%m}",
            "ip": request.ip,
            "request_id": request.request_id if request.request_id != "-" else "",
            "created": timezone.now(),
        },
    )
    return [row[0] for row in cursor.fetchall()]
