"""Metering arithmetic: billed seconds are exactly the union of billed intervals (from the start of an
instance's container on a node, Ready or not, until it stops, restarts, fails or terminates), cut without
overlap only where billing stops, the price changes, a UTC month starts or an hourly checkpoint passes;
recomputing later never changes what was already final, and cutting from the end of a final piece gives
what cutting from the start gives."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.billing.intervals import Interval, Transition, billed_intervals, pieces, price_at

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
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
    st.tuples(st.sampled_from(sorted(MOVES)), st.floats(min_value=0, max_value=4000, allow_nan=False)),
    max_size=25,
)
# Timelines that start anywhere in the last two days of October, so some cross the start of November.
start_strategy = st.integers(min_value=0, max_value=2 * 86400)


def _shifted(timeline: list[Transition], offset: int) -> list[Transition]:
    moved = T0 - timedelta(days=2) + timedelta(seconds=offset)
    return [Transition(t.at - T0 + moved, t.billable) for t in timeline]


@settings(max_examples=300, deadline=None)
@given(steps=steps_strategy, offset=start_strategy)
def test_billed_seconds_equal_the_union_of_billed_intervals(steps, offset):
    timeline = _shifted(_timeline(steps), offset)
    now = T0 + timedelta(days=3, seconds=1234)
    cut = pieces(billed_intervals(timeline), checkpoint=HOUR, prices=ONE_PRICE, now=now)
    # An interval still open is billed up to the last checkpoint.
    last_checkpoint = now.replace(minute=0, second=0)
    assert sum(p.seconds for p in cut) == _union_seconds(timeline, until=last_checkpoint)
    for earlier, later in itertools.pairwise(cut):
        assert earlier.end <= later.start  # no overlap, in order
    for piece in cut:
        assert piece.seconds > 0
        hour_start = piece.start.replace(minute=0, second=0)
        assert piece.end <= hour_start + HOUR  # never across a checkpoint (nor a day or a month)
        assert piece.start.month == (piece.end - timedelta(seconds=1)).month


@settings(max_examples=200, deadline=None)
@given(steps=steps_strategy, split=st.floats(min_value=0, max_value=1))
def test_recomputing_later_keeps_every_final_piece(steps, split):
    timeline = _timeline(steps)
    end = timeline[-1].at + timedelta(minutes=5) if timeline else T0
    earlier_now = T0 + (end - T0) * split
    known = [t for t in timeline if t.at <= earlier_now]
    first = pieces(billed_intervals(known), checkpoint=HOUR, prices=ONE_PRICE, now=earlier_now)
    later = pieces(billed_intervals(timeline), checkpoint=HOUR, prices=ONE_PRICE, now=end)
    # What was final then is still there, identical: a re-run of the metering task changes nothing.
    assert set(first) <= set(later)


@settings(max_examples=200, deadline=None)
@given(steps=steps_strategy, offset=start_strategy, which=st.integers(min_value=0))
def test_cutting_from_the_end_of_a_final_piece_gives_the_same_pieces(steps, offset, which):
    """What an incremental pass relies on: from where the ledger ends (the end of a final piece), the line in
    force there and the later lines give the rest of the full computation, piece for piece."""
    timeline = _shifted(_timeline(steps), offset)
    now = T0 + timedelta(days=3)
    prices = [*ONE_PRICE, (T0 - timedelta(hours=5, seconds=17), Decimal("3.0000"))]
    full = pieces(billed_intervals(timeline), checkpoint=HOUR, prices=prices, now=now)
    if not full:
        return
    since = full[which % len(full)].end
    in_force = [t for t in timeline if t.at.replace(microsecond=0) <= since]
    head = [Transition(since, in_force[-1].billable)] if in_force else []
    rest = pieces(
        billed_intervals(head + [t for t in timeline if t.at.replace(microsecond=0) > since]),
        checkpoint=HOUR,
        prices=prices,
        now=now,
    )
    assert [p for p in full if p.start >= since] == rest


def test_price_change_mid_hour_bills_each_part_at_its_own_price():
    change = T0 + timedelta(minutes=90)
    prices = [(datetime(2000, 1, 1, tzinfo=UTC), Decimal("2.0000")), (change, Decimal("3.0000"))]
    cut = pieces(
        [Interval(T0 + timedelta(minutes=10), T0 + timedelta(minutes=150))],
        checkpoint=HOUR,
        prices=prices,
        now=T0 + timedelta(hours=5),
    )
    assert [(p.seconds, p.price_per_hour) for p in cut] == [
        (50 * 60, Decimal("2.0000")),  # 00:10 to the checkpoint at 01:00
        (30 * 60, Decimal("2.0000")),  # 01:00 to the change at 01:30
        (30 * 60, Decimal("3.0000")),  # to the checkpoint at 02:00
        (30 * 60, Decimal("3.0000")),  # to the stop at 02:30
    ]
    assert price_at(prices, change) == Decimal("3.0000")


def test_open_interval_is_billed_only_up_to_the_last_checkpoint():
    cut = pieces(
        [Interval(T0 + timedelta(seconds=10), None)],
        checkpoint=HOUR,
        prices=ONE_PRICE,
        now=T0 + timedelta(hours=2, minutes=59, seconds=59),
    )
    assert [(p.start, p.end) for p in cut] == [
        (T0 + timedelta(seconds=10), T0 + HOUR),
        (T0 + HOUR, T0 + 2 * HOUR),
    ]


def test_a_row_never_crosses_the_start_of_a_month_whatever_the_checkpoint():
    before = T0 - timedelta(hours=3)  # 31 October 21:00
    cut = pieces(
        [Interval(before, T0 + timedelta(hours=2))], checkpoint=timedelta(days=7), prices=ONE_PRICE, now=T0
    )
    assert [(p.start, p.end) for p in cut] == [(before, T0), (T0, T0 + timedelta(hours=2))]


def test_an_always_on_month_is_one_row_an_hour():
    october = datetime(2026, 10, 1, tzinfo=UTC)
    cut = pieces([Interval(october - timedelta(days=1), None)], checkpoint=HOUR, prices=ONE_PRICE, now=T0)
    assert sum(1 for p in cut if p.start >= october) == 31 * 24  # 744: the longest month
    assert sum(1 for p in cut if p.start < october) == 24


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
