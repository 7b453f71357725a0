"""Rate limits per API token, per signed-in user, and per IP for anonymous callers."""

from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from apps.core.middleware import client_ip

if TYPE_CHECKING:
    from rest_framework.views import APIView


class _RetryAfterAlways(SimpleRateThrottle):
    """DRF's wait() is None once the history holds more requests than the current rate allows (the rate
    was lowered): answer with the time until the oldest request leaves the window instead, so every 429
    carries Retry-After."""

    def wait(self) -> float | None:
        remaining = super().wait()
        if remaining is None and self.history:
            duration: float = getattr(self, "duration", 0.0)
            return max(0.0, duration - (self.now - self.history[-1]))
        return remaining


class PrincipalRateThrottle(_RetryAfterAlways):
    scope = "principal"

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        # request.auth is the API token under Bearer authentication, None under the session.
        ident = f"token:{request.auth.pk}" if request.auth is not None else f"user:{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(_RetryAfterAlways):
    scope = "anon"

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        if request.user and request.user.is_authenticated:
            return None
        # The client's address as everywhere else (TRUSTED_PROXY_HOPS), not DRF's get_ident, which without
        # NUM_PROXIES keys on the whole X-Forwarded-For header: a caller could change it on every request.
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request._request)}
