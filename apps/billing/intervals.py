"""Pure arithmetic of metering: billed intervals from a resource's timeline, cut into ledger pieces. Times are
floored to whole seconds first, so billed seconds add up exactly.

A piece ends only where something makes it end: the end of its billed interval (a state change), a price
change, the start of a UTC month (the billing period) or a checkpoint (every `checkpoint`, aligned to the
Unix epoch: hourly by default). So the ledger grows with events, plus one row per checkpoint for a resource
that runs on; a running resource's last final piece ends at the checkpoint before `now`."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


@dataclass(frozen=True)
class Transition:
    """One line of an instance's timeline: whether it was billed after `at` (its pod held GPUs)."""

    at: datetime
    billable: bool


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime | None  # None: still running


@dataclass(frozen=True)
class Piece:
    start: datetime
    end: datetime
    price_per_hour: Decimal

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())


def billed_intervals(transitions: Iterable[Transition]) -> list[Interval]:
    """Intervals in which the instance was billed: from a line that starts billing until one that ends it.
    `transitions` in the order they were written."""
    intervals: list[Interval] = []
    started: datetime | None = None
    for t in transitions:
        at = floor_second(t.at)
        if started is None and t.billable:
            started = at
        elif started is not None and not t.billable:
            if at > started:
                intervals.append(Interval(started, at))
            started = None
    if started is not None:
        intervals.append(Interval(started, None))
    return intervals


def price_at(prices: Sequence[tuple[datetime, Decimal]], moment: datetime) -> Decimal:
    """The price in force at `moment`; `prices` is sorted by effective time and starts early enough."""
    current = prices[0][1]
    for effective_from, price in prices:
        if effective_from <= moment:
            current = price
        else:
            break
    return current


def checkpoint_start(moment: datetime, checkpoint: timedelta) -> datetime:
    """The checkpoint at or before `moment` (checkpoints are aligned to the Unix epoch)."""
    seconds = int((moment - EPOCH).total_seconds())
    step = int(checkpoint.total_seconds())
    return EPOCH + timedelta(seconds=seconds - seconds % step)


def next_month_start(moment: datetime) -> datetime:
    """The first instant of the UTC month after the one `moment` is in."""
    moment = moment.astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def pieces(
    intervals: Iterable[Interval],
    *,
    checkpoint: timedelta,
    prices: Sequence[tuple[datetime, Decimal]],
    now: datetime,
) -> list[Piece]:
    """Cut intervals at their ends, price changes, month starts and checkpoints. Only final pieces are
    returned: those of ended intervals, and those of a running interval up to the last checkpoint before
    `now`. The cuts depend on the timeline alone, never on when this runs or where it starts: cutting from
    the end of an earlier piece gives the same pieces as cutting from the start, and recomputing later gives
    the same pieces again (plus newer ones), which is what makes metering idempotent and incremental."""
    now = floor_second(now)
    changes = sorted({floor_second(at) for at, _ in prices})
    result: list[Piece] = []
    for interval in intervals:
        end = interval.end if interval.end is not None else checkpoint_start(now, checkpoint)
        cursor = interval.start
        while cursor < end:
            cut = min(checkpoint_start(cursor, checkpoint) + checkpoint, next_month_start(cursor), end)
            later_change = bisect.bisect_right(changes, cursor)
            if later_change < len(changes) and changes[later_change] < cut:
                cut = changes[later_change]
            result.append(Piece(cursor, cut, price_at(prices, cursor)))
            cursor = cut
    return result
