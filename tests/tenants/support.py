"""Helpers shared by the accounts, tenants and audit tests: the one error shape, raw JSON requests,
whole-database scans, row counts and invitations with a known secret."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.accounts.models import ApiToken, User
from apps.audit.models import AuditEvent
from apps.core.models import IdempotencyKey
from apps.tenants.models import Invitation, Membership, Tenant


def assert_error(response: Any, status: int, code: str | None = None, field: str | None = None) -> dict:
    """The response has `status` and the body {"error": {"code", "message", "fields"}}; returns the error."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict), error
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert field in error["fields"], error
        assert error["fields"][field] and all(isinstance(m, str) for m in error["fields"][field]), error
    return error


def database_text() -> str:
    """Every row of every table of the database, cast to text and joined: for "this secret is nowhere"."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            name = connection.ops.quote_name(table)
            cursor.execute(f"SELECT t::text FROM {name} AS t")  # noqa: S608 - table names from introspection
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


def make_invitation(
    *, tenant: Any, invited_by: Any, email: str, role: str = "member", **extra: Any
) -> tuple[Invitation, str]:
    """A pending invitation saved directly, and the secret its email link would carry."""
    secret = secrets.token_urlsafe(32)
    extra.setdefault("expires_at", timezone.now() + timedelta(days=7))
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
        invited_by=invited_by,
        **extra,
    )
    return invitation, secret


def send(client: Any, method: str, url: str, body: Any = None, **headers: Any) -> Any:
    """A JSON request; a `str` body is sent as is, so malformed JSON can be sent too."""
    if isinstance(body, str):
        return client.generic(method.upper(), url, body, content_type="application/json", **headers)
    return getattr(client, method.lower())(url, body, format="json", **headers)


def row_counts() -> dict[str, int]:
    """Rows of every table these apps write, to prove a refused request wrote nothing."""
    models = [User, Tenant, Membership, Invitation, ApiToken, AuditEvent, IdempotencyKey]
    return {model.__name__: model.objects.count() for model in models}
