"""Template helpers for the console layout and its numbers: the tenant switcher, money and durations."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django import template

from apps.console.build_banner import POLL_TRIGGER as BUILD_POLL_TRIGGER
from apps.console.build_banner import current_banner
from apps.tenants.selectors import memberships_for_user

register = template.Library()

CENT = Decimal("0.01")


@register.simple_tag(takes_context=True)
def console_memberships(context: Any) -> list[Any]:
    """The signed-in user's memberships, for the tenant switcher (nobody else's tenants, ever)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return []
    return list(memberships_for_user(user=user))


@register.filter
def money(value: Any) -> str:
    """A Decimal amount as dollars and cents, rounded half up once, for display: -3.5 -> "-$3.50"."""
    if value is None or value == "":
        return "—"
    try:
        amount = Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        return str(value)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


@register.filter
def price(value: Any) -> str:
    """A price per hour with up to four decimals, as the catalog stores it: 2.4900 -> "$2.49"."""
    if value is None or value == "":
        return "—"
    amount = Decimal(str(value))
    text = f"{amount:,.4f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{amount:,.2f}"
    return f"${text}"


@register.filter
def duration(seconds: Any) -> str:
    """Seconds as the two largest units: 93784 -> "1 d 2 h"; None -> ""."""
    if seconds is None or seconds == "":
        return ""
    remaining = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count or (unit == "s" and not parts):
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2])


@register.filter
def percent_of(used: Any, limit: Any) -> int:
    """Used as a whole percentage of limit, capped at 100 (for usage bars)."""
    try:
        used_n, limit_n = float(used), float(limit)
    except (TypeError, ValueError):
        return 0
    if limit_n <= 0:
        return 100 if used_n > 0 else 0
    return min(100, round(100 * used_n / limit_n))


@register.inclusion_tag("console/_build_banner.html", takes_context=True)
def build_banner(context: Any) -> dict[str, Any]:
    """`make run`'s bring-up banner for signed-in users (apps/console/build_banner.py); nothing otherwise."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"build_banner": None}
    return {"build_banner": current_banner(), "build_poll_trigger": BUILD_POLL_TRIGGER, "user": user}
