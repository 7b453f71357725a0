"""Failed log-in attempts counted per address and per client IP in the cache, so password guessing is slow.

After LOGIN_MAX_FAILURES failures within LOGIN_FAILURE_WINDOW_SECONDS, further attempts for that email (or
from that IP, with a larger allowance) are refused until the window passes, whatever the password. The
counting is address_limits.AddressLimit, shared with the limits on sign-up, password reset and resend.
"""

from __future__ import annotations

from django.conf import settings

from apps.accounts.address_limits import AddressLimit

IP_FACTOR = 5  # one IP may try several accounts (a shared office), but not endlessly


def _limit() -> AddressLimit:
    failures = settings.LOGIN_MAX_FAILURES
    return AddressLimit(
        name="login-fail",
        per_address=failures,
        per_ip=failures * IP_FACTOR,
        window_seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS,
    )


def is_blocked(email: str, ip: str | None) -> bool:
    return _limit().is_blocked(email, ip)


def record_failure(email: str, ip: str | None) -> None:
    _limit().record(email, ip)


def clear(email: str) -> None:
    _limit().clear_address(email)
