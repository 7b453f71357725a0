"""Geometry of the console's server-rendered SVG charts, and the ledger reads that feed them.

Every shape is computed here, in whole SVG units, so the chart templates (templates/console/charts/, drawn
by the inclusion tags in apps/console/templatetags/charts.py) only place rectangles and lines, and tests can
check the numbers. Money stays Decimal; amounts are shown in cents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from apps.billing import selectors as billing_selectors
from apps.tenants.models import Tenant

CENT = Decimal("0.01")
ZERO = Decimal(0)
HOUR = Decimal(3600)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --- vertical bars: spend per day, per GPU type ----------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    short: str  # the label under the bar
    value: Decimal
    x: int
    y: int
    width: int
    height: int


CHART_HEIGHT = 160
CHART_BAR_GAP = 4


def bar_chart(
    rows: list[tuple[str, Decimal]], *, bar_width: int = 18, short: Callable[[str], str] = str
) -> dict[str, Any]:
    """Bars whose heights are proportional to the largest value (a value above zero is at least 1 unit
    high, so a small day never looks like an empty one)."""
    peak = max((value for _, value in rows), default=ZERO)
    bars = []
    for index, (label, value) in enumerate(rows):
        height = int((value / peak) * CHART_HEIGHT) if peak > 0 else 0
        if value > 0:
            height = max(height, 1)
        bars.append(
            Bar(
                label=label,
                short=short(label),
                value=value,
                x=index * (bar_width + CHART_BAR_GAP),
                y=CHART_HEIGHT - height,
                width=bar_width,
                height=height,
            )
        )
    peak_bar = max(bars, key=lambda bar: bar.value, default=None)
    return {
        "bars": bars,
        "width": max(1, len(rows) * (bar_width + CHART_BAR_GAP)),
        "height": CHART_HEIGHT,
        "peak": peak,
        "peak_label": peak_bar.label if peak_bar is not None and peak > 0 else None,
        "total": sum((value for _, value in rows), ZERO),
    }


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def spend_by_day(*, tenant: Tenant, start: datetime, end: datetime) -> list[tuple[str, Decimal]]:
    """Every UTC day of [start, end), days without usage as 0, from one grouped read of the ledger."""
    amounts = {
        row["key"]: row["amount"]
        for row in billing_selectors.usage_report(tenant=tenant, start=start, end=end, group_by="day")
    }
    days = []
    day = start.astimezone(UTC).date()
    while day_start(day) < end:
        days.append((day.isoformat(), cents(amounts.get(day.isoformat(), ZERO))))
        day += timedelta(days=1)
    return days


def last_days(now: datetime, days: int) -> datetime:
    """The start (UTC midnight) of the `days` UTC days ending with today."""
    return day_start(now.astimezone(UTC).date() - timedelta(days=days - 1))


# --- horizontal bars: GPUs in use against quota ----------------------------------------------------------

QUOTA_WIDTH = 320
QUOTA_ROW = 44  # a label line, then the bar
QUOTA_BAR = 14


@dataclass(frozen=True)
class QuotaBar:
    label: str
    used: int
    limit: int
    shared: bool  # the type has no limit of its own: it counts against the tenant's GPU total
    y: int  # top of the row; the label's baseline is y + 12, the bar starts at y + 18
    used_width: int
    over: bool  # at or past the limit: launching one more is refused

    @property
    def text_y(self) -> int:
        return self.y + 12

    @property
    def bar_y(self) -> int:
        return self.y + 18


def quota_bars(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One bar per GPU type: the track is the type's limit, the filled part what is in use."""
    bars = []
    for index, row in enumerate(rows):
        used, limit = int(row["used"]), int(row["limit"])
        share = min(1.0, used / limit) if limit > 0 else (1.0 if used else 0.0)
        label = row["gpu_type"] + (f" in {row['region']}" if row.get("region") else "")
        bars.append(
            QuotaBar(
                label=label,
                used=used,
                limit=limit,
                shared=bool(row.get("shared")),
                y=index * QUOTA_ROW,
                used_width=round(QUOTA_WIDTH * share),
                over=used >= limit,
            )
        )
    return {"bars": bars, "width": QUOTA_WIDTH, "height": max(1, len(bars) * QUOTA_ROW), "bar": QUOTA_BAR}


# --- the balance runway: the balance projected at the current burn rate ----------------------------------

RUNWAY_WIDTH = 480
RUNWAY_HEIGHT = 120

# (horizon, step) in seconds: the smallest horizon that shows the balance reach zero, ticked in round steps.
_H, _D = 3600, 86400
RUNWAY_SCALES = (
    (_H, 15 * 60),
    (2 * _H, 30 * 60),
    (3 * _H, 30 * 60),
    (6 * _H, _H),
    (12 * _H, 2 * _H),
    (_D, 4 * _H),
    (2 * _D, 8 * _H),
    (3 * _D, 12 * _H),
    (7 * _D, _D),
    (14 * _D, 2 * _D),
    (30 * _D, 5 * _D),
)


@dataclass(frozen=True)
class RunwayPoint:
    label: str  # "now", "+4 h", "+1 d 12 h"
    at: datetime
    balance: Decimal
    x: int
    y: int


def _offset_label(seconds: int) -> str:
    if seconds == 0:
        return "now"
    days, rest = divmod(seconds, _D)
    hours, rest = divmod(rest, _H)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if rest:
        parts.append(f"{rest // 60} min")
    return "+" + " ".join(parts)


def runway_chart(*, balance: Decimal, burn_per_hour: Decimal, now: datetime) -> dict[str, Any]:
    """The balance falling at today's burn rate until it reaches zero (or to the end of 30 days), with a tick
    every round step; `empty_at` is when it reaches zero, None without running costs."""
    start = max(balance, ZERO)
    runway: int | None = None  # seconds until the balance reaches zero; None: it does not fall
    if burn_per_hour > 0:
        runway = int(start * HOUR / burn_per_hour)
    horizon, step = next(
        ((h, s) for h, s in RUNWAY_SCALES if runway is not None and runway <= h), RUNWAY_SCALES[-1]
    )

    def x_of(offset: int) -> int:
        return round(RUNWAY_WIDTH * offset / horizon)

    def y_of(amount: Decimal) -> int:
        if start <= 0:
            return RUNWAY_HEIGHT
        return RUNWAY_HEIGHT - round(RUNWAY_HEIGHT * float(amount / start))

    def balance_at(offset: int) -> Decimal:
        return max(ZERO, start - burn_per_hour * Decimal(offset) / HOUR)

    points = [
        RunwayPoint(
            label=_offset_label(offset),
            at=now + timedelta(seconds=offset),
            balance=cents(balance_at(offset)),
            x=x_of(offset),
            y=y_of(balance_at(offset)),
        )
        for offset in range(0, horizon + 1, step)
    ]
    # The line bends where the balance reaches zero, which is rarely on a tick.
    line = [(0, y_of(start))]
    if runway is not None and runway < horizon:
        line.append((x_of(runway), RUNWAY_HEIGHT))
    line.append((RUNWAY_WIDTH, y_of(balance_at(horizon))))
    return {
        "points": points,
        "polyline": " ".join(f"{x},{y}" for x, y in line),
        "area": " ".join(f"{x},{y}" for x, y in [*line, (RUNWAY_WIDTH, RUNWAY_HEIGHT), (0, RUNWAY_HEIGHT)]),
        "width": RUNWAY_WIDTH,
        "height": RUNWAY_HEIGHT,
        "balance": cents(balance),
        "burn_per_hour": cents(burn_per_hour),
        "empty_at": now + timedelta(seconds=runway) if runway is not None else None,
        "horizon_label": _offset_label(horizon),
        "exhausted": balance <= 0,
    }
