"""Wallet snapshots (apps/billing/snapshots.py): the wallet read from a snapshot plus the rows after its
cutoff is the wallet summed over the whole ledger, whatever sits around the cutoff (grants expiring on either
side and at it, reversals, a month boundary), and a row, grant or reversal the snapshot missed makes the
read fall back to the full sum until the refresh catches up."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.billing import selectors
from apps.billing.models import CreditGrant, CreditReversal, UsageRecord, WalletSnapshot
from apps.billing.selectors import wallet_of, wallets_of
from apps.billing.snapshots import snapshot_due, wallet_snapshots_refresh
from tests.billing.wallet_helpers import grant, usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

D = Decimal
MONTH = datetime(2026, 11, 1, tzinfo=UTC)  # a month boundary between the cutoff and the read
REFRESHED = MONTH + timedelta(minutes=5)  # the refresh runs here: cutoff MONTH - 10 min (lag 15 min)
CUTOFF = REFRESHED - timedelta(minutes=15)
READ = MONTH + timedelta(minutes=12)
_sources = itertools.count()


@pytest.fixture(autouse=True)
def _lag(settings: Any) -> None:
    settings.BILLING_SNAPSHOT_LAG_SECONDS = 900
    settings.BILLING_SNAPSHOT_MARGIN_SECONDS = 300


def row(tenant: Any, amount: str, *, end: datetime, created_at: datetime | None = None) -> UsageRecord:
    """A one-minute ledger row ending at `end`, created (by default) as metering would: just after it."""
    return usage(tenant, amount, end=end, created_at=created_at or end + timedelta(seconds=30))


def reversal(credit: CreditGrant, amount: str, *, at: datetime) -> CreditReversal:
    return CreditReversal.objects.create(
        tenant=credit.tenant,
        grant=credit,
        cause="refund",
        source_id=f"re_{next(_sources)}",
        sequence=1,
        amount=D(amount),
        created_at=at,
    )


def history(tenant: Any) -> dict[str, CreditGrant]:
    """Grants expiring before, at and after the cutoff and after the read, a top-up, a grant after the
    cutoff; a refund before and after it; a row a minute from 40 minutes before the month to the read."""
    t = tenant
    grants = {
        "before": grant(t, "1.00", at=MONTH - timedelta(days=30), expires_at=CUTOFF - timedelta(minutes=3)),
        "at": grant(t, "2.00", at=MONTH - timedelta(days=30), expires_at=CUTOFF),
        # Still drawn from after the cutoff, until it expires with 2.25 left (the row ending at its expiry
        # is the last it pays for).
        "after": grant(t, "10.00", at=MONTH - timedelta(days=30), expires_at=MONTH + timedelta(minutes=2)),
        "paid": grant(t, "20.00", at=MONTH - timedelta(days=29), kind="paid"),
        "late": grant(t, "3.00", at=CUTOFF + timedelta(minutes=2), expires_at=MONTH + timedelta(minutes=8)),
    }
    reversal(grants["paid"], "4.00", at=MONTH - timedelta(days=10))
    reversal(grants["paid"], "1.00", at=MONTH + timedelta(minutes=1))
    for minute in range(-40, 12):
        row(t, "0.250000", end=MONTH + timedelta(minutes=minute))
    return grants


def full(tenant: Any, now: datetime) -> dict[str, Any]:
    """The wallet summed over the whole ledger: read with the snapshot out of the way."""
    saved = list(WalletSnapshot.objects.filter(tenant=tenant).values())
    WalletSnapshot.objects.filter(tenant=tenant).delete()
    try:
        return asdict(wallet_of(tenant, now))
    finally:
        WalletSnapshot.objects.bulk_create(WalletSnapshot(**values) for values in saved)


def stale(tenant: Any, now: datetime) -> bool:
    """Whether the read at `now` passes the tenant's snapshot over (it missed something)."""
    snapshot = WalletSnapshot.objects.get(tenant=tenant)
    _, found = selectors.ledger_inputs(
        [tenant.pk], now=now, mtd_from=selectors.month_start(now), snapshots={tenant.pk: snapshot}
    )
    return tenant.pk in found


def test_the_wallet_from_a_snapshot_is_the_wallet_of_the_whole_ledger_across_expiries_and_a_month():
    tenant = TenantFactory(credit=0)
    grants = history(tenant)
    assert wallet_snapshots_refresh(now=REFRESHED, tenant_ids=[tenant.pk]) == 1
    snapshot = WalletSnapshot.objects.get(tenant=tenant)
    assert snapshot.cutoff == CUTOFF
    # October's rows up to the cutoff: 31 of them (ending from 40 minutes before the month to 10 before).
    assert snapshot.month_spend == D("7.750000")
    assert not stale(tenant, READ)

    w = wallet_of(tenant, READ)
    assert asdict(w) == full(tenant, READ)
    # 36.00 granted, 5.00 refunded; expired unused: 2.25 of "after" and 1.50 of "late" (it paid from 00:03).
    assert w.remaining[str(grants["after"].pk)] == 0 and w.credits == D("27.25")
    # November so far: the 11 rows that started in it (the one ending at midnight started in October).
    assert w.month_to_date_spend == D("2.750000")
    # Before the month ends the snapshot's October spend counts, plus every row after the cutoff (the full
    # sum counts rows by when they started, even those ending after the read).
    october = MONTH - timedelta(seconds=1)
    assert asdict(wallet_of(tenant, october)) == full(tenant, october)
    assert wallet_of(tenant, october).month_to_date_spend == D("13.000000")
    # Between the expiries of "after" (00:02) and "late" (00:08): the row ending at 00:02 is the last
    # "after" pays for, though it expires after the cutoff.
    between = MONTH + timedelta(minutes=5)
    assert asdict(wallet_of(tenant, between)) == full(tenant, between)
    assert wallet_of(tenant, between).balance == D("36.00") - 5 - D("13.00") - D("2.25")
    # A read at or before the cutoff cannot use it.
    assert asdict(wallet_of(tenant, CUTOFF)) == full(tenant, CUTOFF)


def test_a_late_row_makes_the_snapshot_stale_until_the_refresh_takes_it_in():
    tenant = TenantFactory(credit=0)
    history(tenant)
    wallet_snapshots_refresh(now=REFRESHED, tenant_ids=[tenant.pk])
    # Metering catches up after an outage: a row that ended before the cutoff, written after the snapshot.
    row(
        tenant,
        "1.500000",
        end=CUTOFF - timedelta(hours=3, seconds=30),
        created_at=REFRESHED + timedelta(minutes=1),
    )
    assert stale(tenant, READ)
    w = wallet_of(tenant, READ)
    assert asdict(w) == full(tenant, READ)
    assert w.usage_total == D("14.500000")  # 52 rows of 0.25 and the late one

    assert tenant.pk in snapshot_due()
    wallet_snapshots_refresh(now=READ, tenant_ids=[tenant.pk])
    assert not stale(tenant, READ + timedelta(minutes=1))
    assert asdict(wallet_of(tenant, READ + timedelta(minutes=1))) == full(tenant, READ + timedelta(minutes=1))


def test_a_grant_or_reversal_created_by_the_cutoff_but_committed_after_the_snapshot_makes_it_stale(settings):
    """Grants and reversals are dated by their created_at, so one the snapshot missed was created after it
    settled and dated by its cutoff: possible only with a lag shorter than the margin, as here."""
    settings.BILLING_SNAPSHOT_LAG_SECONDS, settings.BILLING_SNAPSHOT_MARGIN_SECONDS = 60, 600
    tenant = TenantFactory(credit=0)
    grants = history(tenant)
    reversal(grants["paid"], "0.50", at=REFRESHED - timedelta(minutes=3))  # settled at -10, cutoff at -1
    wallet_snapshots_refresh(now=REFRESHED, tenant_ids=[tenant.pk])
    # It holds both reversals created since it settled (this one and history's at 00:01).
    assert WalletSnapshot.objects.get(tenant=tenant).recent_reversals == 2
    assert not stale(tenant, READ)
    reversal(grants["paid"], "2.00", at=REFRESHED - timedelta(minutes=2))
    assert stale(tenant, READ)
    assert asdict(wallet_of(tenant, READ)) == full(tenant, READ)

    wallet_snapshots_refresh(now=READ, tenant_ids=[tenant.pk])
    assert not stale(tenant, READ + timedelta(minutes=1))
    grant(tenant, "7.00", at=READ - timedelta(minutes=2), expires_at=READ - timedelta(seconds=90))
    assert stale(tenant, READ + timedelta(minutes=1))
    assert asdict(wallet_of(tenant, READ + timedelta(minutes=1))) == full(tenant, READ + timedelta(minutes=1))


def test_a_refresh_from_the_previous_snapshot_equals_one_from_the_beginning():
    tenant = TenantFactory(credit=0)
    history(tenant)
    wallet_snapshots_refresh(now=REFRESHED, tenant_ids=[tenant.pk])
    for minute in range(12, 40):
        row(tenant, "0.100000", end=MONTH + timedelta(minutes=minute))
    later = MONTH + timedelta(minutes=45)
    wallet_snapshots_refresh(now=later, tenant_ids=[tenant.pk])  # carries on from the one at REFRESHED
    carried = WalletSnapshot.objects.filter(tenant=tenant).values().get()
    assert carried["rebuilt_at"] == REFRESHED  # it did carry on
    WalletSnapshot.objects.filter(tenant=tenant).delete()
    wallet_snapshots_refresh(now=later, tenant_ids=[tenant.pk])
    rebuilt = WalletSnapshot.objects.filter(tenant=tenant).values().get()
    assert rebuilt == {**carried, "rebuilt_at": later}
    assert carried["month_spend"] == D("2.750000") + 19 * D("0.100000")  # November's rows, to 00:30


def test_a_row_committed_later_than_the_margin_allows_is_missed_until_the_next_rebuild():
    """The limit of the guard, and what bounds it: a row whose transaction stayed open longer than
    BILLING_SNAPSHOT_MARGIN_SECONDS after its created_at looks settled, so refreshes carry on without it until
    the snapshot is rebuilt from the beginning (BILLING_SNAPSHOT_REBUILD_HOURS)."""
    tenant = TenantFactory(credit=0)
    history(tenant)
    wallet_snapshots_refresh(now=REFRESHED, tenant_ids=[tenant.pk])
    row(tenant, "1.000000", end=CUTOFF - timedelta(hours=1))  # created_at long before this commit
    assert not stale(tenant, READ)
    assert wallet_of(tenant, READ).usage_total == full(tenant, READ)["usage_total"] - 1
    wallet_snapshots_refresh(now=READ, tenant_ids=[tenant.pk])
    assert wallet_of(tenant, READ + timedelta(minutes=1)).usage_total == D("13.000000")  # still missed

    rebuilt = REFRESHED + timedelta(hours=24, minutes=1)
    wallet_snapshots_refresh(now=rebuilt, tenant_ids=[tenant.pk])
    snapshot = WalletSnapshot.objects.get(tenant=tenant)
    assert snapshot.rebuilt_at == rebuilt
    assert asdict(wallet_of(tenant, rebuilt)) == full(tenant, rebuilt)
    assert wallet_of(tenant, rebuilt).usage_total == D("14.000000")


def test_many_wallets_at_once_mix_fresh_stale_and_missing_snapshots():
    tenants = [TenantFactory(credit=0) for _ in range(3)]
    for tenant in tenants:
        history(tenant)
    wallet_snapshots_refresh(now=REFRESHED, tenant_ids=[t.pk for t in tenants[:2]])
    row(tenants[1], "9.000000", end=CUTOFF - timedelta(days=1), created_at=REFRESHED + timedelta(minutes=2))
    together = wallets_of(tenants, READ)
    for tenant in tenants:
        assert asdict(together[tenant.pk]) == full(tenant, READ)
    assert together[tenants[1].pk].usage_total == together[tenants[0].pk].usage_total + 9


def test_the_refresh_picks_the_tenants_with_new_ledger_rows(settings):
    idle, busy, fresh = (TenantFactory(credit=0) for _ in range(3))
    row(busy, "1.000000", end=MONTH - timedelta(hours=1))
    row(idle, "1.000000", end=MONTH - timedelta(hours=1))
    assert set(snapshot_due()) >= {idle.pk, busy.pk} and fresh.pk not in snapshot_due()
    wallet_snapshots_refresh(now=MONTH)
    assert not {idle.pk, busy.pk} & set(snapshot_due())
    row(busy, "1.000000", end=MONTH + timedelta(minutes=3))  # created after the snapshot settled
    assert busy.pk in snapshot_due() and idle.pk not in snapshot_due()


# --- what the admission read costs -----------------------------------------------------------------------


def _ledger_statements(tenant: Any, now: datetime) -> tuple[int, list[tuple[str, Any]]]:
    """The wallet read's statement count, and the ledger statements it sent (SQL and parameters)."""
    sent: list[tuple[str, Any]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        wallet_of(tenant, now)
    return len(sent), [(sql, params) for sql, params in sent if 'FROM "billing_usagerecord"' in sql]


def _ledger_rows_touched(sql: str, params: Any) -> tuple[int, str]:
    """Ledger rows the statement's plan read (returned, filtered out or rechecked), and the plan."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    touched = 0

    def walk(node: dict[str, Any]) -> None:
        nonlocal touched
        if node.get("Relation Name") == "billing_usagerecord":
            read = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
            touched += (read + node.get("Rows Removed by Index Recheck", 0)) * node["Actual Loops"]
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return touched, json.dumps(plan)


def _recent_rows(tenant: Any, now: datetime, minutes: int) -> None:
    for minute in range(minutes, 0, -1):
        row(
            tenant,
            "0.010000",
            end=now - timedelta(minutes=minute),
            created_at=now - timedelta(minutes=minute),
        )


def test_the_admission_read_costs_the_rows_after_the_snapshot_not_the_history():
    now = timezone.now().replace(microsecond=0)
    old, fresh = TenantFactory(credit=0), TenantFactory(credit=0)
    start = now - timedelta(days=2)
    UsageRecord.objects.bulk_create(
        UsageRecord(
            id=f"history:{n}",
            tenant=old,
            resource_type="instance",
            resource_id=f"history-{n % 7}",
            meter="instance_seconds:x",
            period=DateTimeTZRange(start - timedelta(minutes=n + 1), start - timedelta(minutes=n), "[)"),
            quantity_seconds=60,
            unit_price_per_hour=D("1.0000"),
            amount=D("0.010000"),
            created_at=start - timedelta(minutes=n) + timedelta(seconds=30),
        )
        for n in range(5000)
    )
    for tenant in (old, fresh):
        grant(tenant, "1000.00", at=now - timedelta(days=30), kind="paid")
        grant(tenant, "5.00", at=now - timedelta(days=1), expires_at=now + timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_usagerecord")

    # Without a snapshot the read sums all 5,000 rows: the measure below sees history when it is read.
    _, [(sql, params)] = _ledger_statements(old, now)
    assert _ledger_rows_touched(sql, params)[0] >= 5000

    for tenant in (old, fresh):
        _recent_rows(tenant, now, 20)  # one row a minute for the last 20 minutes, as metering writes them
    wallet_snapshots_refresh(now=now, tenant_ids=[old.pk, fresh.pk])  # cutoff: now - 15 minutes
    for tenant in (old, fresh):
        row(tenant, "0.010000", end=now, created_at=now)
    later = now + timedelta(seconds=30)

    old_count, [(sql, params)] = _ledger_statements(old, later)
    fresh_count, _ = _ledger_statements(fresh, later)
    assert old_count == fresh_count
    touched, plan = _ledger_rows_touched(sql, params)
    # The rows that ended after the cutoff (now - 15 min: 15 of them) and those created since the snapshot
    # settled (now - 5 min, all among them), however long the history.
    assert touched <= 15, plan
    assert "usage_tenant_period_end_idx" in plan
    assert wallet_of(old, later).usage_total == 5000 * D("0.01") + 21 * D("0.01")


def test_the_beat_task_snapshots_the_tenants_with_new_rows(settings):
    from django.utils.module_loading import import_string

    entry = settings.CELERY_BEAT_SCHEDULE["billing-wallet-snapshots"]
    assert entry["schedule"] == float(settings.BILLING_SNAPSHOT_REFRESH_SECONDS)
    task = import_string(entry["task"])
    tenant = TenantFactory(credit=0)
    now = timezone.now()
    row(tenant, "1.000000", end=now - timedelta(hours=1))
    assert task() >= 1
    snapshot = WalletSnapshot.objects.get(tenant=tenant)
    assert now - timedelta(seconds=900) <= snapshot.cutoff <= timezone.now() - timedelta(seconds=900)
    assert wallet_of(tenant).usage_total == D("1.000000")
