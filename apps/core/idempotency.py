"""The Idempotency-Key mechanism every create endpoint uses (decorate its `post` with `@idempotent`).

The key, its scope (the tenant, or the user for tenant-less creates), a hash of the request and the
response are stored in the request's own transaction. A concurrent request with the same key blocks on
the unique index until the first commits, then replays its response. Errors are not stored, so a
corrected request may reuse the key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import InvalidInput, Unprocessable
from apps.core.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def request_fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    raw = f"{request.method}\n{request.path}\n{body}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _user(request: Request) -> Any:
    """The signed-in user: create endpoints are behind IsAuthenticated."""
    user = request.user
    if not getattr(user, "is_authenticated", False):
        raise TypeError("@idempotent needs an authenticated request")
    return user


def _scope(view: Any, request: Request) -> str:
    tenant = getattr(view, "tenant", None)
    return f"tenant:{tenant.pk}" if tenant is not None else f"user:{_user(request).pk}"


def _read_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters.",
            fields={HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} printable characters."]},
        )
    return key


def _replay(record: IdempotencyKey, fingerprint: str) -> Response:
    if record.request_hash != fingerprint:
        raise Unprocessable(
            f"This {HEADER} was already used with a different request.",
            code="idempotency_key_reused",
            fields={HEADER: ["Already used with a different request body or path."]},
        )
    response = Response(record.response_body, status=record.response_status)
    response["Idempotent-Replayed"] = "true"
    return response


def _stored_copy(data: Any, secret_fields: tuple[str, ...]) -> Any:
    """The response as kept for replays, with secrets blanked: a secret shown once is never stored."""
    if not secret_fields or not isinstance(data, dict):
        return data
    return {key: (None if key in secret_fields else value) for key, value in data.items()}


def idempotent(handler: Callable[..., Response] | None = None, *, secret_fields: tuple[str, ...] = ()) -> Any:
    """Decorate a view's `post`. `secret_fields` are response fields replays return as null (the first
    response carries them; the stored copy does not)."""

    def decorate(handler: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(handler)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            return _run(handler, secret_fields, view, request, *args, **kwargs)

        wrapper.idempotent = True  # type: ignore[attr-defined]  # read by the OpenAPI schema
        return wrapper

    return decorate(handler) if handler is not None else decorate


def _run(
    handler: Callable[..., Response],
    secret_fields: tuple[str, ...],
    view: Any,
    request: Request,
    *args: Any,
    **kwargs: Any,
) -> Response:
    key = _read_key(request)
    if key is None:
        with transaction.atomic():
            return handler(view, request, *args, **kwargs)
    fingerprint = request_fingerprint(request)
    scope = _scope(view, request)
    now = timezone.now()
    with transaction.atomic():
        IdempotencyKey.objects.filter(scope=scope, key=key, expires_at__lte=now).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    scope=scope,
                    key=key,
                    user=_user(request),
                    method=request.method or "",
                    path=request.path[:500],
                    request_hash=fingerprint,
                    expires_at=now + timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS),
                )
        except IntegrityError:
            existing = IdempotencyKey.objects.get(scope=scope, key=key)
            return _replay(existing, fingerprint)
        response = handler(view, request, *args, **kwargs)
        if 200 <= response.status_code < 300:
            record.response_status = response.status_code
            record.response_body = _stored_copy(response.data, secret_fields)
            record.save(update_fields=["response_status", "response_body"])
        else:
            transaction.set_rollback(True)
        return response


def purge_expired() -> int:
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
