"""Wallet arithmetic: usage draws down the grant expiring soonest first, an expired grant takes only its
unused remainder with it, and the balance is exact Decimal arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.wallet import Grant, Reversal, Usage, buckets, draw_down, replay

T0 = datetime(2026, 11, 1, tzinfo=UTC)
D = Decimal


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_no_expiry_balance_is_credits_minus_usage():
    grants = [Grant("a", D("10.00"), h(0)), Grant("b", D("5.50"), h(1))]
    usage = [Usage(h(2), D("3.250001")), Usage(h(3), D("0.000002"))]
    w = draw_down(grants, usage, now=h(4))
    assert w.balance == D("12.249997")
    assert w.credits == D("15.50") and w.used == D("3.250003") and w.expired_unused == 0


def test_usage_draws_the_soonest_expiring_grant_first_so_only_its_remainder_expires():
    paid = Grant("paid", D("10.00"), h(0))  # never expires: used last
    promo = Grant("promo", D("5.00"), h(0), expires_at=h(10))
    usage = [Usage(h(1), D("3.00"))]
    before = draw_down([paid, promo], usage, now=h(9))
    assert before.remaining == {"paid": D("10.00"), "promo": D("2.00")}
    assert before.balance == D("12.00")

    after = draw_down([paid, promo], usage, now=h(10))
    assert after.expired_unused == D("2.00")  # the unused remainder, not the whole grant
    assert after.remaining == {"paid": D("10.00"), "promo": D("0")}
    assert after.balance == D("10.00") == after.credits - after.used


def test_usage_after_expiry_comes_out_of_paid_credit():
    promo = Grant("promo", D("5.00"), h(0), expires_at=h(1))
    paid = Grant("paid", D("10.00"), h(0))
    w = draw_down([promo, paid], [Usage(h(2), D("4.00"))], now=h(3))
    assert w.remaining == {"promo": D("0"), "paid": D("6.00")}
    assert w.expired_unused == D("5.00")


def test_of_two_promotions_the_one_expiring_first_is_used_first():
    late = Grant("late", D("5.00"), h(0), expires_at=h(20))
    soon = Grant("soon", D("5.00"), h(0), expires_at=h(10))
    w = draw_down([late, soon], [Usage(h(1), D("6.00"))], now=h(2))
    assert w.remaining == {"late": D("4.00"), "soon": D("0.00")}


def test_usage_ending_at_the_expiry_instant_still_counts_against_the_grant():
    promo = Grant("promo", D("5.00"), h(0), expires_at=h(1))
    w = draw_down([promo], [Usage(h(1), D("1.00"))], now=h(2))
    assert w.expired_unused == D("4.00") and w.balance == 0


def test_debt_is_paid_first_by_the_next_grant():
    w = draw_down(
        [Grant("a", D("1.00"), h(0)), Grant("b", D("10.00"), h(2), expires_at=h(5))],
        [Usage(h(1), D("3.00"))],
        now=h(6),
    )
    # 2.00 of debt was paid from b before b expired; only b's remaining 8.00 expired.
    assert w.expired_unused == D("8.00")
    assert w.balance == D("0.00") and w.debt == 0


def test_running_past_zero_gives_a_negative_balance():
    w = draw_down([Grant("a", D("1.00"), h(0))], [Usage(h(1), D("1.50"))], now=h(2))
    assert w.balance == D("-0.50") and w.debt == D("0.50")


def test_a_reversal_pays_back_debt_then_credits():
    w = draw_down([Grant("a", D("1.00"), h(0))], [Usage(h(1), D("2.00")), Usage(h(2), D("-1.50"))], now=h(3))
    assert w.balance == D("0.50") and w.debt == 0 and w.used == D("0.50")


def test_buckets_order_usage_like_the_boundaries():
    b = buckets([h(1), h(2)])
    assert b[0] == (None, h(1), False, h(1) - timedelta(microseconds=1))
    assert b[1] == (h(1), None, True, h(1))
    assert b[2][:3] == (h(1), h(2), False) and h(1) < b[2][3] < h(2)
    assert b[3] == (h(2), None, True, h(2))
    assert b[4][:3] == (h(2), None, False) and b[4][3] > h(2)
    assert buckets([]) == []


# --- properties ----------------------------------------------------------------------------------------

money = st.decimals(min_value=D("0.01"), max_value=D("100"), places=2)
usage_amount = st.decimals(min_value=D("0"), max_value=D("20"), places=6)
offset = st.integers(min_value=0, max_value=100)

grant_st = st.builds(
    lambda amount, at, life, paid: (amount, at, None if paid else life),
    money,
    offset,
    st.integers(min_value=0, max_value=60),
    st.booleans(),
)


def _grants(raw: list[tuple[Decimal, int, int | None]]) -> list[Grant]:
    return [
        Grant(f"g{i}", amount, h(at), None if life is None else h(at + life))
        for i, (amount, at, life) in enumerate(raw)
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(grant_st, max_size=6),
    st.lists(st.tuples(offset, usage_amount), max_size=12),
    st.integers(min_value=0, max_value=200),
)
def test_balance_is_credits_minus_usage_minus_expired_remainders(raw_grants, raw_usage, now_at):
    grants = _grants(raw_grants)
    usage = [Usage(h(at), amount) for at, amount in raw_usage]
    w = draw_down(grants, usage, now=h(now_at))

    assert w.balance == w.granted - w.used - w.expired_unused == w.credits - w.used
    assert w.granted == sum((g.amount for g in grants), D(0))
    assert w.used == sum((u.amount for u in usage), D(0))
    expired = [g for g in grants if g.expires_at is not None and g.expires_at <= h(now_at)]
    assert 0 <= w.expired_unused <= sum((g.amount for g in expired), D(0))
    assert all(w.remaining[g.key] == 0 for g in expired)
    assert all(v >= 0 for v in w.remaining.values()) and w.debt >= 0
    assert (w.debt == 0) or all(v == 0 for v in w.remaining.values())  # no debt while credit is left
    if not expired:
        assert w.balance == w.granted - w.used  # nothing expired: exactly credits - usage


@settings(max_examples=200, deadline=None)
@given(
    st.lists(grant_st, max_size=5),
    st.lists(st.tuples(offset, usage_amount), max_size=10),
    usage_amount,
    offset,
)
def test_more_usage_never_raises_the_balance(raw_grants, raw_usage, extra, extra_at):
    grants = _grants(raw_grants)
    usage = [Usage(h(at), amount) for at, amount in raw_usage]
    now = h(200)
    more = draw_down(grants, [*usage, Usage(h(extra_at), extra)], now=now)
    assert more.balance <= draw_down(grants, usage, now=now).balance


@settings(max_examples=200, deadline=None)
@given(st.lists(grant_st, max_size=5), st.lists(st.tuples(offset, usage_amount), max_size=12))
def test_summing_usage_per_bucket_gives_the_same_wallet_as_row_by_row(raw_grants, raw_usage):
    """What wallet_of does in SQL: usage summed between grant boundaries, drawn down at one instant."""
    grants = _grants(raw_grants)
    now = h(150)
    usage = [Usage(h(at), amount) for at, amount in raw_usage]
    boundaries = [g.granted_at for g in grants] + [
        g.expires_at for g in grants if g.expires_at is not None and g.expires_at <= now
    ]
    summed = []
    for lower, upper, exact, at in buckets(boundaries) or [(None, None, False, now)]:
        if exact:
            inside = [u for u in usage if u.at == lower]
        else:
            inside = [u for u in usage if (lower is None or u.at > lower) and (upper is None or u.at < upper)]
        if inside:
            summed.append(Usage(at, sum((u.amount for u in inside), D(0))))
    assert draw_down(grants, summed, now=now) == draw_down(grants, usage, now=now)


# --- credit reversals (refunds and chargebacks of paid credit) -------------------------------------------


def test_a_reversal_takes_from_its_own_grant_first_then_the_others_then_debt():
    paid = Grant("paid", D("10.00"), h(0))
    promo = Grant("promo", D("5.00"), h(0), expires_at=h(50))
    usage = [Usage(h(1), D("8.00"))]  # promo 5.00 then paid 3.00: paid has 7.00 left
    w = draw_down([paid, promo], usage, now=h(3), reversals=[Reversal(h(2), D("10.00"), "paid")])
    # 7.00 from the paid grant, 3.00 beyond it is debt (the promotion was already used up).
    assert w.remaining == {"paid": D("0"), "promo": D("0")}
    assert (w.balance, w.debt, w.reversed) == (D("-3.00"), D("3.00"), D("10.00"))
    assert w.credits == D("5.00") and w.balance == w.credits - w.used


def test_a_partial_reversal_leaves_the_rest_of_the_grant():
    w = draw_down(
        [Grant("paid", D("50.00"), h(0))], [], now=h(2), reversals=[Reversal(h(1), D("20.00"), "paid")]
    )
    assert w.remaining == {"paid": D("30.00")} and w.balance == D("30.00")


def test_a_reversal_given_back_pays_debt_first_then_returns_to_its_grant():
    paid = Grant("paid", D("10.00"), h(0))
    reversals = [Reversal(h(1), D("10.00"), "paid"), Reversal(h(3), D("-10.00"), "paid")]
    w = draw_down([paid], [Usage(h(2), D("4.00"))], now=h(4), reversals=reversals)
    assert (w.balance, w.debt, w.reversed) == (D("6.00"), D("0"), D("0"))
    assert w.remaining == {"paid": D("6.00")}


money_signed = st.decimals(min_value=D("-50"), max_value=D("50"), places=2).filter(lambda v: v != 0)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(grant_st, min_size=1, max_size=6),
    st.lists(st.tuples(offset, usage_amount), max_size=12),
    st.lists(st.tuples(offset, money_signed, st.integers(min_value=0, max_value=5)), max_size=6),
    st.integers(min_value=0, max_value=200),
)
def test_reversals_keep_the_balance_exact(raw_grants, raw_usage, raw_reversals, now_at):
    grants = _grants(raw_grants)
    usage = [Usage(h(at), amount) for at, amount in raw_usage]
    reversals = [Reversal(h(at), amount, grants[i % len(grants)].key) for at, amount, i in raw_reversals]
    w = draw_down(grants, usage, now=h(now_at), reversals=reversals)

    assert w.reversed == sum((r.amount for r in reversals), D(0))
    assert w.balance == w.granted - w.reversed - w.used - w.expired_unused == w.credits - w.used
    assert all(v >= 0 for v in w.remaining.values()) and w.debt >= 0
    assert (w.debt == 0) or all(v == 0 for v in w.remaining.values())  # no debt while credit is left
    without = draw_down(grants, usage, now=h(now_at))
    if all(r.amount > 0 for r in reversals):
        assert w.balance <= without.balance  # taking credit back never raises the balance
    if not any(g.expires_at is not None and g.expires_at <= h(now_at) for g in grants):
        # Nothing expired: each reversal moves the balance by exactly its amount.
        assert w.balance == without.balance - w.reversed


@settings(max_examples=200, deadline=None)
@given(
    st.lists(grant_st, min_size=1, max_size=5),
    st.lists(st.tuples(offset, usage_amount), max_size=10),
    st.lists(st.tuples(offset, money_signed, st.integers(min_value=0, max_value=5)), max_size=5),
)
def test_summing_usage_between_grant_and_reversal_boundaries_gives_the_same_wallet(
    raw_grants, raw_usage, raw_reversals
):
    """What wallet_of does in SQL, with reversal times among the bucket boundaries."""
    grants = _grants(raw_grants)
    now = h(150)
    usage = [Usage(h(at), amount) for at, amount in raw_usage]
    reversals = [Reversal(h(at), amount, grants[i % len(grants)].key) for at, amount, i in raw_reversals]
    boundaries = (
        [g.granted_at for g in grants]
        + [g.expires_at for g in grants if g.expires_at is not None and g.expires_at <= now]
        + [r.at for r in reversals]
    )
    summed = []
    for lower, upper, exact, at in buckets(boundaries) or [(None, None, False, now)]:
        if exact:
            inside = [u for u in usage if u.at == lower]
        else:
            inside = [u for u in usage if (lower is None or u.at > lower) and (upper is None or u.at < upper)]
        if inside:
            summed.append(Usage(at, sum((u.amount for u in inside), D(0))))
    assert draw_down(grants, summed, now=now, reversals=reversals) == draw_down(
        grants, usage, now=now, reversals=reversals
    )


# --- carrying on from a snapshot (apps/billing/snapshots.py) ---------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    st.lists(grant_st, min_size=1, max_size=6),
    st.lists(st.tuples(offset, st.decimals(min_value=D("-5"), max_value=D("20"), places=6)), max_size=12),
    st.lists(st.tuples(offset, money_signed, st.integers(min_value=0, max_value=5)), max_size=5),
    st.integers(min_value=0, max_value=160),
    st.integers(min_value=0, max_value=60),
    st.booleans(),
)
def test_drawing_down_from_a_snapshot_at_any_cutoff_gives_the_full_wallet(
    raw_grants, raw_usage, raw_reversals, cutoff_at, after, pass_everything
):
    """The state at a cutoff H (every event at or before H) plus the events after H is the wallet of all
    events: grants expiring on either side of H, at H itself, usage and reversals at H, credit given back."""
    grants = _grants(raw_grants)
    usage = [Usage(h(at), amount) for at, amount in raw_usage]
    reversals = [Reversal(h(at), amount, grants[i % len(grants)].key) for at, amount, i in raw_reversals]
    cutoff, now = h(cutoff_at), h(cutoff_at + after)
    snapshot = replay(
        [g for g in grants if g.granted_at <= cutoff],
        [u for u in usage if u.at <= cutoff],
        now=cutoff,
        reversals=[r for r in reversals if r.at <= cutoff],
    )
    assert snapshot.drawdown() == draw_down(
        [g for g in grants if g.granted_at <= cutoff],
        [u for u in usage if u.at <= cutoff],
        now=cutoff,
        reversals=[r for r in reversals if r.at <= cutoff],
    )
    if pass_everything:  # earlier events passed in again are ignored: the snapshot holds them
        later_grants, later_usage, later_reversals = grants, usage, reversals
    else:
        later_grants = [g for g in grants if g.granted_at > cutoff]
        later_usage = [u for u in usage if u.at > cutoff]
        later_reversals = [r for r in reversals if r.at > cutoff]
    resumed = draw_down(later_grants, later_usage, now=now, reversals=later_reversals, start=snapshot)
    assert resumed == draw_down(grants, usage, now=now, reversals=reversals)


def test_a_snapshot_carries_a_grant_that_expires_after_its_cutoff():
    promo = Grant("promo", D("5.00"), h(0), expires_at=h(10))
    paid = Grant("paid", D("10.00"), h(0))
    snapshot = replay([promo, paid], [Usage(h(1), D("3.00"))], now=h(5))
    assert snapshot.remaining == {"promo": D("2.00"), "paid": D("10.00")}
    assert [g.key for g in snapshot.active] == ["paid", "promo"]
    # After the cutoff: the promotion's 2.00 expire at h(10); later usage comes out of the paid grant.
    w = draw_down([], [Usage(h(11), D("1.00"))], now=h(12), start=snapshot)
    assert (w.expired_unused, w.balance, w.remaining) == (
        D("2.00"),
        D("9.00"),
        {"promo": 0, "paid": D("9.00")},
    )
