"""Attempts counted per email address and per client IP in the cache (Redis, shared by every web process).

One mechanism for every account action a stranger can repeat: failed log-ins (login_throttle.py), and sign-up,
password reset and verification resend, each of which sends an email. A limit allows `per_address` counted
attempts for one address and `per_ip` from one client IP within `window_seconds` of the first; past either,
the action is refused until that window ends. The address is counted whether or not an account has it, and
refusals read the same either way, so a limit never tells whether an address is registered.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class AddressLimit:
    name: str
    per_address: int
    per_ip: int
    window_seconds: int

    def _keys(self, email: str, ip: str | None) -> list[tuple[str, int]]:
        keys = []
        address = email.strip().lower()
        if address:
            digest = hashlib.sha256(address.encode()).hexdigest()[:32]  # no addresses in the cache
            keys.append((f"{self.name}:email:{digest}", self.per_address))
        if ip:
            keys.append((f"{self.name}:ip:{ip}", self.per_ip))
        return keys

    def retry_after(self, email: str, ip: str | None) -> int | None:
        """Seconds until another attempt is allowed, or None when one is allowed now."""
        waits = [
            self._seconds_left(key) for key, limit in self._keys(email, ip) if (cache.get(key) or 0) >= limit
        ]
        return max(waits) if waits else None

    def is_blocked(self, email: str, ip: str | None) -> bool:
        return self.retry_after(email, ip) is not None

    def record(self, email: str, ip: str | None) -> None:
        for key, _limit in self._keys(email, ip):
            # The window starts at the first attempt: the counter and its end are set together, only once.
            if cache.add(key, 0, timeout=self.window_seconds):
                cache.set(f"{key}:ends", time.time() + self.window_seconds, timeout=self.window_seconds)
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=self.window_seconds)
                cache.set(f"{key}:ends", time.time() + self.window_seconds, timeout=self.window_seconds)

    def clear_address(self, email: str) -> None:
        for key, _limit in self._keys(email, None):
            cache.delete_many([key, f"{key}:ends"])

    def _seconds_left(self, key: str) -> int:
        ends = cache.get(f"{key}:ends")
        if ends is None:
            return self.window_seconds
        return max(1, math.ceil(float(ends) - time.time()))


def email_action_limit(action: str) -> AddressLimit:
    """The limit of an action that sends an email: `signup`, `password-reset` or `verify-resend`."""
    return AddressLimit(
        name=action,
        per_address=settings.ACCOUNT_EMAIL_MAX_PER_ADDRESS,
        per_ip=settings.ACCOUNT_EMAIL_MAX_PER_IP,
        window_seconds=settings.ACCOUNT_EMAIL_WINDOW_SECONDS,
    )


def minutes(seconds: int) -> str:
    """A wait for a refusal message, in whole minutes rounded up: `3 minutes`, `1 minute`."""
    count = max(1, math.ceil(seconds / 60))
    return f"{count} minute{'s' if count != 1 else ''}"
