import ipaddress
import logging
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core import request_context

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_ip(request: HttpRequest) -> str | None:
    """The client's address. With TRUSTED_PROXY_HOPS = 0, REMOTE_ADDR: X-Forwarded-For is whatever the client
    wrote. With N trusted proxies in front, each appended the address it received from, so the Nth entry
    from the right is the one the outermost trusted proxy saw (entries further left are the client's own
    claims); a header with fewer entries did not come through them all, and REMOTE_ADDR is used, as it is
    for an entry that is not an IP address (audit rows store the address as one)."""
    hops: int = settings.TRUSTED_PROXY_HOPS
    if hops > 0:
        header = request.META.get("HTTP_X_FORWARDED_FOR", "")
        entries = [entry.strip() for entry in header.split(",")] if header else []
        if len(entries) >= hops:
            try:
                return str(ipaddress.ip_address(entries[-hops]))
            except ValueError:
                pass
    return request.META.get("REMOTE_ADDR") or None


def _channel(path: str) -> str:
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/admin/"):
        return "admin"
    return "console"


class RequestContextMiddleware:
    """Gives every request an id (honouring a sane X-Request-ID) and binds it for audit and logs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else request_context.new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        # A fresh context: nothing bound outside a request (a test, an embedding thread) leaks into it.
        fresh = {"token_id": None, "tenant": None, "actor": None, "instance_id": None}
        with request_context.bind(
            request_id=request_id, ip=client_ip(request), via=_channel(request.path), **fresh
        ):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class ApiBodySizeLimitMiddleware:
    """Refuses oversized API bodies with 413 before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            limit = settings.API_MAX_BODY_BYTES
            if length < 0 or length > limit:
                message = f"The request body must be at most {limit} bytes."
                if length < 0:
                    message = "The Content-Length header is not a valid number."
                return JsonResponse(
                    {"error": {"code": "request_too_large", "message": message, "fields": {}}},
                    status=413 if length > limit else 400,
                )
        return self.get_response(request)


class ActorContextMiddleware:
    """Names the signed-in user in the request context (log lines); after AuthenticationMiddleware. API
    tokens are named by their authentication class, which runs later, inside the view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            request_context.update(actor=f"user:{user.pk}")
        return self.get_response(request)


access_logger = logging.getLogger("gpucloud.access")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes, every few seconds


class AccessLogMiddleware:
    """One line per request, after the response, with the context the view bound (tenant, actor, instance).
    It names the URL pattern, not the path: paths may carry secrets (password-reset links)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        if request.path not in _QUIET_PATHS:
            match = getattr(request, "resolver_match", None)
            access_logger.info(
                "%s %s %s",
                request.method,
                f"/{match.route}" if match is not None and match.route else "<unmatched>",
                response.status_code,
                extra={
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
        return response
