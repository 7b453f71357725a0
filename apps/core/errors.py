"""One error format for the whole API: {"error": {"code", "message", "fields"}}.

Services raise the domain errors below; the DRF exception handler and the 404/500 handlers render them.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A refusal a client can act on. Subclasses fix the status and a stable code."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code = "invalid"
    # Seconds for a Retry-After header: a refusal that goes away by itself (a service still starting).
    retry_after: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, list[str]] | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}
        self.details = details


class InvalidInput(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"


class PaymentRequired(DomainError):
    """The tenant's wallet or budget does not cover the request (code insufficient_funds)."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    code = "insufficient_funds"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Unprocessable(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"


def error_body(
    code: str, message: str, fields: dict[str, Any] | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "fields": fields or {}}
    if details is not None:
        body["details"] = details  # machine-readable specifics, e.g. the quota limit and current use
    return {"error": body}


def flatten_field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"a.b.0.c": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key == "non_field_errors" else str(key)
            out.update(flatten_field_errors(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(flatten_field_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def _validation_message(fields: dict[str, list[str]]) -> str:
    if not fields:
        return "The request is invalid."
    name, messages = next(iter(fields.items()))
    if name == "non_field_errors":
        return messages[0]
    extra = f" (and {len(fields) - 1} more field errors)" if len(fields) > 1 else ""
    return f"{name}: {messages[0]}{extra}"


# Django wraps the driver's errors (psycopg's, and psycopg_pool's PoolTimeout, an OperationalError) in these.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_UNAVAILABLE_MESSAGE = "The database is briefly unavailable; nothing was changed. Retry."
DATABASE_RETRY_AFTER_SECONDS = 2


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        refusal = Response(error_body(exc.code, exc.message, exc.fields, exc.details), status=exc.status_code)
        if exc.retry_after is not None:
            refusal["Retry-After"] = str(exc.retry_after)
        return refusal
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", "The request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DATABASE_UNAVAILABLE):
        # The database went away (a restart, a fail-over, a lost connection), refused for a moment
        # (deadlock, serialization), or this process's connection pool had no connection to give within its
        # timeout (psycopg_pool.PoolTimeout, under load): the transaction rolled back, so nothing was written
        # and a retry is safe (with the same Idempotency-Key for writes). Say so instead of a bare 500.
        logger.warning("database unavailable: %s", type(exc).__name__, exc_info=exc)
        unavailable = Response(
            error_body("database_unavailable", DATABASE_UNAVAILABLE_MESSAGE),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
        unavailable["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return unavailable
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handler renders it
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_field_errors(exc.detail)
        response.data = error_body("invalid", _validation_message(fields), fields)
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else exc.default_detail
        code = exc.get_codes()
        code_str = code if isinstance(code, str) else exc.default_code
        if isinstance(exc, exceptions.NotFound):
            code_str, message = "not_found", "Not found."
        wait = getattr(exc, "wait", None)
        if isinstance(exc, exceptions.Throttled) and wait is not None:
            seconds = max(1, math.ceil(wait))
            response["Retry-After"] = str(seconds)  # the same figure as the message
            message = f"Too many requests. Retry in {seconds} seconds."
        response.data = error_body(str(code_str), str(message))
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_or_html_400(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's refusals of a malformed request (SuspiciousOperation: a Host outside ALLOWED_HOSTS, a form
    it cannot read): the error envelope under /api/, the 400 page elsewhere. Django logs the exception."""
    if _is_api(request):
        return JsonResponse(error_body("invalid", "The request is malformed and was refused."), status=400)
    return defaults.bad_request(request, exception)


def json_or_html_404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


_UNAVAILABLE_PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Briefly unavailable · gpucloud</title>"
    "</head><body><h1>Briefly unavailable</h1><p>The service is busy or its database is briefly "
    "unavailable; nothing was changed. Try again in a few seconds.</p></body></html>"
)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After, for a database error outside the API views (middleware, console pages): the
    API's error envelope under /api/, a page that needs nothing of the database elsewhere."""
    if _is_api(request):
        response: HttpResponse = JsonResponse(
            error_body("database_unavailable", DATABASE_UNAVAILABLE_MESSAGE), status=503
        )
    else:
        response = HttpResponse(_UNAVAILABLE_PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def json_or_html_500(request: HttpRequest) -> HttpResponse:
    """Django's handler500: called while the uncaught exception is being handled, so it can tell a database
    that is unavailable (or a pool with no connection to give) from a bug."""
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return database_unavailable(request)
    if _is_api(request):
        return JsonResponse(
            error_body("server_error", "An internal error occurred; it has been logged.", {}), status=500
        )
    return defaults.server_error(request)
