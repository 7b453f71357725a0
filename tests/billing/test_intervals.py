"""Metering arithmetic: billed seconds are exactly the union of billed intervals (from the start of an
instance's container on a node, Ready or not, until it stops, restarts, fails or terminates), cut without
overlap, and recomputing later never changes what was already final."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.intervals import Interval, Transition, billed_intervals, pieces, price_at

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MINUTE = timedelta(seconds=60)
ONE_PRICE = [(datetime(2000, 1, 1, tzinfo=UTC), Decimal("2.4900"))]

# What the operator and customers can do to an instance, and whether it is billed afterwards: a container
# started (Ready or not) or Ready starts billing; everything else that moves it away from its pod ends it.
MOVES = {
    "container_started": True,
    "ready": True,
    "stop": False,
    "crash": False,
    "not_ready_timeout": False,
    "restart": False,
    "terminate": False,
    "start": False,
    "kube_event": None,  # a line that leaves billing as it was
}


def _timeline(steps: list[tuple[str, float]]) -> list[Transition]:
    """A plausible timeline: moves applied in order at increasing times (fractions of seconds included)."""
    at, billed, out = T0, False, []
    for move, gap in steps:
        at += timedelta(seconds=gap)
        after = MOVES[move]
        billed = billed if after is None else after
        out.append(Transition(at, billed))
    return out


def _union_seconds(transitions: list[Transition], until: datetime | None = None) -> int:
    """Independent count: between two consecutive lines (dates floored to the second), the seconds are
    billed when the earlier line says billable; after the last, until `until`."""
    floors = [t.at.replace(microsecond=0) for t in transitions]
    if until is not None and transitions:
        floors.append(until)
    return sum(
        int((floors[i + 1] - floors[i]).total_seconds())
        for i in range(len(floors) - 1)
        if transitions[i].billable
    )


steps_strategy = st.lists(
    st.tuples(st.sampled_from(sorted(MOVES)), st.floats(min_value=0, max_value=400, allow_nan=False)),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps_strategy)
def test_billed_seconds_equal_the_union_of_billed_intervals(steps):
    timeline = _timeline(steps)
    cut = pieces(billed_intervals(timeline), window=MINUTE, prices=ONE_PRICE, now=T0 + timedelta(days=2))
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
    first = pieces(billed_intervals(known), window=MINUTE, prices=ONE_PRICE, now=earlier_now)
    later = pieces(billed_intervals(timeline), window=MINUTE, prices=ONE_PRICE, now=end)
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
    timeline = [Transition(T0 + timedelta(seconds=1.9), True), Transition(T0 + timedelta(seconds=2.2), False)]
    assert billed_intervals(timeline) == [Interval(T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))]


def test_lines_that_keep_billing_as_it_was_neither_start_nor_end_an_interval():
    timeline = [
        Transition(T0, False),  # launch
        Transition(T0 + timedelta(seconds=5), True),  # container started, not Ready
        Transition(T0 + timedelta(seconds=9), True),  # Ready
        Transition(T0 + timedelta(seconds=20), True),  # a kube event while billed
        Transition(T0 + timedelta(seconds=30), False),  # stop
        Transition(T0 + timedelta(seconds=31), False),  # pod gone
    ]
    assert billed_intervals(timeline) == [Interval(T0 + timedelta(seconds=5), T0 + timedelta(seconds=30))]
