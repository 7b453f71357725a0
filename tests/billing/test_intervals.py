"""Metering arithmetic: billed seconds are exactly the union of running intervals, cut without overlap, and
recomputing later never changes what was already final."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.intervals import Interval, Transition, pieces, price_at, running_intervals

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MINUTE = timedelta(seconds=60)
ONE_PRICE = [(datetime(2000, 1, 1, tzinfo=UTC), Decimal("2.4900"))]

# What the operator and customers can do to an instance, as (from, to) moves of the state machine.
MOVES = {
    "ready": ("provisioning", "running"),
    "stop": ("running", "stopping"),
    "crash": ("running", "failed"),
    "restart": ("running", "starting"),
    "terminate": ("running", "terminating"),
    "start": ("stopped", "starting"),
}


def _timeline(steps: list[tuple[str, float]]) -> list[Transition]:
    """A plausible timeline: moves applied in order at increasing times (fractions of seconds included)."""
    at, state, out = T0, "provisioning", []
    for move, gap in steps:
        at += timedelta(seconds=gap)
        if move in ("ready", "start"):
            if state == "running":
                continue
            out.append(Transition(at, state, "running"))
            state = "running"
        elif state == "running":
            out.append(Transition(at, "running", MOVES[move][1]))
            state = MOVES[move][1]
    return out


def _union_seconds(transitions: list[Transition], until: datetime | None = None) -> int:
    """Independent count: walk whole seconds, the reference the ledger must match."""
    total, running_since = 0, None
    for t in transitions:
        at = t.at.replace(microsecond=0)
        if t.to_state == "running" and running_since is None:
            running_since = at
        elif t.to_state != "running" and running_since is not None:
            total += int((at - running_since).total_seconds())
            running_since = None
    if running_since is not None and until is not None:
        total += max(0, int((until - running_since).total_seconds()))
    return total


steps_strategy = st.lists(
    st.tuples(st.sampled_from(sorted(MOVES)), st.floats(min_value=0, max_value=400, allow_nan=False)),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps_strategy)
def test_billed_seconds_equal_the_union_of_running_intervals(steps):
    timeline = _timeline(steps)
    cut = pieces(running_intervals(timeline), window=MINUTE, prices=ONE_PRICE, now=T0 + timedelta(days=2))
    # An interval still open is billed up to the last closed window.
    last_window = datetime.fromtimestamp((int((T0 + timedelta(days=2)).timestamp()) // 60) * 60, tz=UTC)
    assert sum(p.seconds for p in cut) == _union_seconds(timeline, until=last_window)
    for earlier, later in itertools.pairwise(cut):
        assert earlier.end <= later.start  # no overlap, in order
    for piece in cut:
        assert piece.seconds > 0
        window_start = piece.start - timedelta(seconds=int(piece.start.timestamp()) % 60)
        assert piece.end <= window_start + MINUTE  # never across a window boundary


@settings(max_examples=200, deadline=None)
@given(steps=steps_strategy, split=st.floats(min_value=0, max_value=1))
def test_recomputing_later_keeps_every_final_piece(steps, split):
    timeline = _timeline(steps)
    end = timeline[-1].at + timedelta(minutes=5) if timeline else T0
    earlier_now = T0 + (end - T0) * split
    known = [t for t in timeline if t.at <= earlier_now]
    first = pieces(running_intervals(known), window=MINUTE, prices=ONE_PRICE, now=earlier_now)
    later = pieces(running_intervals(timeline), window=MINUTE, prices=ONE_PRICE, now=end)
    # What was final then is still there, identical: a re-run of the metering task changes nothing.
    assert set(first) <= set(later)


def test_price_change_mid_window_bills_each_part_at_its_own_price():
    change = T0 + timedelta(seconds=90)
    prices = [(datetime(2000, 1, 1, tzinfo=UTC), Decimal("2.0000")), (change, Decimal("3.0000"))]
    cut = pieces(
        [Interval(T0, T0 + timedelta(seconds=150))], window=MINUTE, prices=prices, now=T0 + timedelta(hours=1)
    )
    assert [(p.seconds, p.price_per_hour) for p in cut] == [
        (60, Decimal("2.0000")),
        (30, Decimal("2.0000")),
        (30, Decimal("3.0000")),
        (30, Decimal("3.0000")),
    ]
    assert price_at(prices, change) == Decimal("3.0000")


def test_open_interval_is_billed_only_up_to_the_last_closed_window():
    cut = pieces(
        [Interval(T0 + timedelta(seconds=10), None)],
        window=MINUTE,
        prices=ONE_PRICE,
        now=T0 + timedelta(seconds=185),
    )
    assert [(p.start, p.end) for p in cut] == [
        (T0 + timedelta(seconds=10), T0 + timedelta(seconds=60)),
        (T0 + timedelta(seconds=60), T0 + timedelta(seconds=120)),
        (T0 + timedelta(seconds=120), T0 + timedelta(seconds=180)),
    ]


def test_sub_second_runs_and_fractions_floor_to_whole_seconds():
    timeline = [
        Transition(T0 + timedelta(seconds=1.9), "provisioning", "running"),
        Transition(T0 + timedelta(seconds=2.2), "running", "stopping"),
    ]
    assert running_intervals(timeline) == [Interval(T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))]
