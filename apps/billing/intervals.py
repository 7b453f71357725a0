"""Pure arithmetic of metering: billed intervals from an instance's timeline, cut into fixed windows and at
price changes. Times are floored to whole seconds first, so billed seconds add up exactly."""

from __future__ import annotations

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


def _window_start(moment: datetime, window: timedelta) -> datetime:
    seconds = int((moment - EPOCH).total_seconds())
    step = int(window.total_seconds())
    return EPOCH + timedelta(seconds=seconds - seconds % step)


def pieces(
    intervals: Iterable[Interval],
    *,
    window: timedelta,
    prices: Sequence[tuple[datetime, Decimal]],
    now: datetime,
) -> list[Piece]:
    """Cut intervals at window boundaries and price changes. Only final pieces are returned: those of ended
    intervals, and those of a running interval whose window has closed by `now`. Recomputing later gives the
    same pieces again (plus newer ones), which is what makes metering idempotent."""
    now = floor_second(now)
    changes = sorted({floor_second(at) for at, _ in prices})
    result: list[Piece] = []
    for interval in intervals:
        end = interval.end if interval.end is not None else _window_start(now, window)
        cursor = interval.start
        while cursor < end:
            cut = min(_window_start(cursor, window) + window, end)
            for change in changes:
                if cursor < change < cut:
                    cut = change
                    break
            result.append(Piece(cursor, cut, price_at(prices, cursor)))
            cursor = cut
    return result
