"""The wallet read at admission is the stored snapshot plus what came after its cutoff, never a sum over the
whole history (apps/billing/snapshots.py). Property: for any history of grants (expiring or not), ledger rows
(written on time or late), refunds, and refreshes at any moments, that read equals the full sum in every
field, at any moment after the refresh."""

from __future__ import annotations

import itertools
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.billing.models import CreditReversal, WalletSnapshot
from apps.billing.selectors import wallet_of
from apps.billing.snapshots import wallet_snapshots_refresh
from tests.billing.wallet_helpers import grant, usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 10, 31, tzinfo=UTC)  # histories run over a month boundary (November 1st is a day on)
_sources = itertools.count()

minutes = st.integers(min_value=0, max_value=24 * 60 * 3)
cents = st.integers(min_value=1, max_value=5_000).map(lambda c: Decimal(c) / 100)
micros = st.integers(min_value=1, max_value=3_000_000).map(lambda m: Decimal(m) / 1_000_000)

grants_st = st.lists(
    st.tuples(minutes, cents, st.one_of(st.none(), st.integers(min_value=1, max_value=24 * 60 * 2))),
    min_size=1,
    max_size=5,
)
rows_st = st.lists(
    # (end, amount, length in seconds, minutes late: metering that was behind, or a late watch event)
    st.tuples(minutes, micros, st.sampled_from([60, 1800, 3600]), st.sampled_from([0, 0, 0, 20, 90])),
    max_size=25,
)
refunds_st = st.lists(st.tuples(minutes, st.integers(min_value=0, max_value=4), cents), max_size=3)
# A refresh near a row's end (some minutes after it), where late rows and cutoffs meet, or anywhere.
refreshes_st = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=120), minutes),
    min_size=1,
    max_size=3,
)
reads_st = st.lists(minutes, min_size=1, max_size=2)


class _Rollback(Exception):
    pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grants=grants_st, rows=rows_st, refunds=refunds_st, refreshes=refreshes_st, reads=reads_st)
def test_the_wallet_from_snapshots_always_equals_the_full_sum(
    django_db_setup: Any,
    grants: list[tuple[int, Decimal, int | None]],
    rows: list[tuple[int, Decimal, int, int]],
    refunds: list[tuple[int, int, Decimal]],
    refreshes: list[tuple[int, int, int]],
    reads: list[int],
) -> None:
    at = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    # Everything happens in the order of its creation, refreshes among it: a refresh sees what exists.
    timeline: list[tuple[datetime, int, Any]] = []
    for m, amount, life in grants:
        timeline.append((at(m), 0, ("grant", amount, at(m + life) if life else None)))
    for end, amount, seconds, late in rows:
        timeline.append((at(end + late) + timedelta(seconds=30), 1, ("row", amount, at(end), seconds)))
    for m, index, amount in refunds:
        timeline.append((at(m), 2, ("refund", index, amount)))
    for index, after, anywhere in refreshes:
        moment = at(rows[index][0] + after) if index < len(rows) else at(anywhere)
        timeline.append((moment, 3, ("refresh",)))
    timeline.sort(key=lambda item: (item[0], item[1]))
    try:
        with transaction.atomic():  # every example leaves nothing behind (the ledger refuses DELETE)
            tenant = TenantFactory(credit=0)
            made: list[Any] = []
            checked = 0
            for when, _, (what, *args) in timeline:
                if what == "grant":
                    amount, expires_at = args
                    made.append(grant(tenant, str(amount), at=when, expires_at=expires_at))
                elif what == "row":
                    amount, end, seconds = args
                    usage(tenant, str(amount), end=end, seconds=seconds, created_at=when)
                elif what == "refund" and made:
                    index, amount = args
                    source = made[index % len(made)]
                    CreditReversal.objects.create(
                        tenant=tenant,
                        grant=source,
                        cause="refund",
                        source_id=f"re_prop_{next(_sources)}",
                        sequence=1,
                        amount=min(amount, source.amount),
                        created_at=when,
                    )
                elif what == "refresh":
                    wallet_snapshots_refresh(now=when, tenant_ids=[tenant.pk])
                # A read after every change, at moments from then on (a snapshot may have missed it).
                for read in reads:
                    moment = when + timedelta(minutes=read % 120)
                    assert asdict(wallet_of(tenant, moment)) == _full(tenant, moment)
                    checked += 1
            assert checked >= len(reads) and WalletSnapshot.objects.filter(tenant=tenant).exists()
            raise _Rollback
    except _Rollback:
        pass


def _full(tenant: Any, moment: datetime) -> dict[str, Any]:
    """The wallet summed over the whole ledger: the same read with the snapshot out of the way."""
    saved = list(WalletSnapshot.objects.filter(tenant=tenant).values())
    WalletSnapshot.objects.filter(tenant=tenant).delete()
    try:
        return asdict(wallet_of(tenant, moment))
    finally:
        WalletSnapshot.objects.bulk_create(WalletSnapshot(**values) for values in saved)
