import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core import request_context

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is trivially forged unless a trusted proxy is configured.
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
        with request_context.bind(request_id=request_id, ip=client_ip(request), via=_channel(request.path)):
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
