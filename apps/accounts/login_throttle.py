"""Failed log-in attempts counted per address and per client IP in the cache, so password guessing is slow.

After LOGIN_MAX_FAILURES failures within LOGIN_FAILURE_WINDOW_SECONDS, further attempts for that email (or
from that IP, with a larger allowance) are refused until the window passes, whatever the password.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

IP_FACTOR = 5  # one IP may try several accounts (a shared office), but not endlessly


def _keys(email: str, ip: str | None) -> list[tuple[str, int]]:
    limit = settings.LOGIN_MAX_FAILURES
    email_key = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    keys = [(f"login-fail:email:{email_key}", limit)]
    if ip:
        keys.append((f"login-fail:ip:{ip}", limit * IP_FACTOR))
    return keys


def is_blocked(email: str, ip: str | None) -> bool:
    return any((cache.get(key) or 0) >= limit for key, limit in _keys(email, ip))


def record_failure(email: str, ip: str | None) -> None:
    for key, _limit in _keys(email, ip):
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def clear(email: str) -> None:
    cache.delete(_keys(email, None)[0][0])
