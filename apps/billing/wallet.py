"""Pure arithmetic of the wallet: which credit grant pays for which usage.

Usage draws down the grants available at the time, the one expiring soonest first (paid grants never expire,
so they are used last; ties by grant time). An expired grant takes with it only its unused remainder. Usage
that finds no credit becomes debt (a negative balance), which the next grant pays first. A negative usage
amount (a reversal) pays back debt first and is otherwise credited back, without expiry.

A credit reversal (a refund or a chargeback of a paid top-up) takes credit back: from what remains of the
grant it reverses first, then from the other grants in draw order, and the rest becomes debt. A negative
reversal (a dispute won) gives it back: it pays debt first and the rest returns to that grant.

Invariant (tested with hypothesis): balance == granted - reversed - usage - expired_unused, exactly, in
Decimal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

ZERO = Decimal("0")
REFUND_KEY = "reversals"

# At one instant: grants arrive first, then credit is reversed, then usage is drawn, then grants expire (a
# grant valid until t pays for usage that ended at t).
_ARRIVE, _REVERSE, _USE, _EXPIRE = 0, 1, 2, 3


@dataclass(frozen=True)
class Grant:
    key: str
    amount: Decimal
    granted_at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Usage:
    at: datetime
    amount: Decimal


@dataclass(frozen=True)
class Reversal:
    """Credit taken back from grant `grant_key` at `at` (amount > 0), or given back to it (amount < 0)."""

    at: datetime
    amount: Decimal
    grant_key: str


@dataclass(frozen=True)
class Drawdown:
    balance: Decimal
    granted: Decimal
    used: Decimal
    expired_unused: Decimal
    debt: Decimal
    remaining: dict[str, Decimal] = field(default_factory=dict)  # per grant; 0 once expired or used up
    reversed: Decimal = ZERO  # net credit taken back (refunds and chargebacks less what was given back)

    @property
    def credits(self) -> Decimal:
        """Credits that still count: everything granted except what was taken back or expired unused."""
        return self.granted - self.reversed - self.expired_unused


def _draw_order(grant: Grant) -> tuple[bool, datetime, datetime, str]:
    never = grant.expires_at is None
    return (never, grant.expires_at or grant.granted_at, grant.granted_at, grant.key)


@dataclass(frozen=True)
class State:
    """Where the draw-down stands once every event at or before `at` is counted: enough to carry on from
    there with the later events only (a wallet snapshot, apps/billing/snapshots.py)."""

    at: datetime
    remaining: dict[str, Decimal]  # every grant seen (0 once expired or used up), REFUND_KEY included
    active: tuple[Grant, ...]  # the grants that still count at `at` (arrived, not expired), by key
    debt: Decimal = ZERO
    granted: Decimal = ZERO
    used: Decimal = ZERO
    expired_unused: Decimal = ZERO
    reversed: Decimal = ZERO

    def drawdown(self) -> Drawdown:
        remaining = {k: v for k, v in self.remaining.items() if k != REFUND_KEY}
        return Drawdown(
            balance=sum(self.remaining.values(), ZERO) - self.debt,
            granted=self.granted,
            used=self.used,
            expired_unused=self.expired_unused,
            debt=self.debt,
            remaining=remaining,
            reversed=self.reversed,
        )


def draw_down(
    grants: Sequence[Grant],
    usage: Iterable[Usage],
    *,
    now: datetime,
    reversals: Iterable[Reversal] = (),
    start: State | None = None,
) -> Drawdown:
    """The wallet at `now`: grants expiring at or before `now` have expired. From `start` (the state at an
    earlier cutoff), only the events after `start.at` are replayed; earlier ones passed in are ignored."""
    return replay(grants, usage, now=now, reversals=reversals, start=start).drawdown()


def replay(
    grants: Sequence[Grant],
    usage: Iterable[Usage],
    *,
    now: datetime,
    reversals: Iterable[Reversal] = (),
    start: State | None = None,
) -> State:
    """The draw-down state at `now` (see draw_down)."""
    after = start.at if start is not None else None

    def later(at: datetime) -> bool:
        return after is None or at > after

    events: list[tuple[datetime, int, int, Grant | Usage | Reversal]] = []
    # Indexes order events of one kind at one instant as the full replay would (input order); the
    # expiries carried over from `start` come first, which is harmless: expiries at one instant commute.
    carried = start.active if start is not None else ()
    for index, grant in enumerate(carried):
        if grant.expires_at is not None and later(grant.expires_at) and grant.expires_at <= now:
            events.append((grant.expires_at, _EXPIRE, index - len(carried), grant))
    for index, grant in enumerate(grants):
        if not later(grant.granted_at):
            continue
        events.append((grant.granted_at, _ARRIVE, index, grant))
        if grant.expires_at is not None and grant.expires_at <= now:
            events.append((grant.expires_at, _EXPIRE, index, grant))
    for index, reversal in enumerate(reversals):
        if later(reversal.at):
            events.append((reversal.at, _REVERSE, index, reversal))
    for index, item in enumerate(usage):
        if later(item.at):
            events.append((item.at, _USE, index, item))
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    remaining: dict[str, Decimal] = dict(start.remaining) if start is not None else {}
    active: dict[str, Grant] = {g.key: g for g in start.active} if start is not None else {}
    debt = expired_unused = granted = used = reversed_ = ZERO
    if start is not None:
        debt, granted, used = start.debt, start.granted, start.used
        expired_unused, reversed_ = start.expired_unused, start.reversed
    for at, kind, _, event in events:
        if isinstance(event, Reversal):
            reversed_ += event.amount
            if event.amount < 0:
                back = -event.amount
                pays = min(debt, back)
                debt -= pays
                # Back to its grant while that still counts; otherwise (expired, or unknown) without expiry.
                key = event.grant_key if event.grant_key in active else REFUND_KEY
                remaining[key] = remaining.get(key, ZERO) + back - pays
                if key == REFUND_KEY:
                    active.setdefault(REFUND_KEY, Grant(REFUND_KEY, ZERO, at))
                continue
            owed = event.amount
            first = [active[event.grant_key]] if event.grant_key in active else []
            rest = sorted((g for g in active.values() if g.key != event.grant_key), key=_draw_order)
            for grant in first + rest:
                take = min(owed, remaining[grant.key])
                remaining[grant.key] -= take
                owed -= take
            debt += owed
            continue
        if isinstance(event, Grant):
            if kind == _ARRIVE:
                granted += event.amount
                pays = min(debt, event.amount)
                debt -= pays
                remaining[event.key] = remaining.get(event.key, ZERO) + event.amount - pays
                active[event.key] = event
            else:
                expired_unused += remaining.get(event.key, ZERO)
                remaining[event.key] = ZERO
                active.pop(event.key, None)
        else:
            item = event
            used += item.amount
            if item.amount < 0:
                back = -item.amount
                pays = min(debt, back)
                debt -= pays
                if back > pays:
                    remaining[REFUND_KEY] = remaining.get(REFUND_KEY, ZERO) + back - pays
                    active.setdefault(REFUND_KEY, Grant(REFUND_KEY, ZERO, at))
                continue
            owed = item.amount
            for grant in sorted(active.values(), key=_draw_order):
                if owed <= 0:
                    break
                take = min(owed, remaining[grant.key])
                remaining[grant.key] -= take
                owed -= take
            debt += owed
    return State(
        at=now,
        remaining=remaining,
        active=tuple(sorted(active.values(), key=lambda g: g.key)),
        debt=debt,
        granted=granted,
        used=used,
        expired_unused=expired_unused,
        reversed=reversed_,
    )


def buckets(boundaries: Iterable[datetime]) -> list[tuple[datetime | None, datetime | None, bool, datetime]]:
    """Split time at the boundaries (times of grants arriving and expiring) into buckets within which the
    order of usage does not matter, each with a representative instant ordered exactly like its usage.

    Returns (lower, upper, exact, at): usage with lower < t < upper (None: unbounded), or t == lower when
    `exact`. Summing usage per bucket and drawing it down at `at` gives the same wallet as row by row.
    """
    points = sorted(set(boundaries))
    if not points:
        return []
    tick = timedelta(microseconds=1)
    result: list[tuple[datetime | None, datetime | None, bool, datetime]] = [
        (None, points[0], False, points[0] - tick)
    ]
    for index, point in enumerate(points):
        result.append((point, None, True, point))
        upper = points[index + 1] if index + 1 < len(points) else None
        if upper is None:
            result.append((point, None, False, point + tick))
        elif upper - point >= 2 * tick:
            result.append((point, upper, False, point + (upper - point) // 2))
    return result
