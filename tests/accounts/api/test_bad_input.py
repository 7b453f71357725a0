"""Bad input to the token endpoints: 4xx naming the field, never 500, and nothing written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts import scopes
from tests.conftest import Actor
from tests.tenants.support import assert_error, row_counts, send

TOO_MANY_SCOPES = ["tenant:read"] * (len(scopes.ALL_SCOPES) + 1)

PAST = (timezone.now() - timedelta(minutes=1)).isoformat()
OK = {"name": "ci", "scopes": ["tenant:read"]}
INV = "invalid"

# (id, method, path, body, status, code, field), paths relative to the tenant.
# fmt: off
CASES: list[tuple[str, str, str, Any, int, str, str | None]] = [
    ("malformed-json", "post", "/tokens", '{"name": "ci", "scopes": [', 400, "parse_error", None),
    ("not-an-object", "post", "/tokens", '"ci"', 400, INV, "non_field_errors"),
    ("name-missing", "post", "/tokens", {"scopes": ["tenant:read"]}, 400, INV, "name"),
    ("name-empty", "post", "/tokens", {**OK, "name": ""}, 400, INV, "name"),
    ("name-too-long", "post", "/tokens", {**OK, "name": "n" * 101}, 400, INV, "name"),
    ("name-number", "post", "/tokens", {**OK, "name": 42}, 400, INV, "name"),
    ("name-object", "post", "/tokens", {**OK, "name": {"a": "b"}}, 400, INV, "name"),
    ("scopes-missing", "post", "/tokens", {"name": "ci"}, 400, INV, "scopes"),
    ("scopes-string", "post", "/tokens", {**OK, "scopes": "tenant:read"}, 400, INV, "scopes"),
    ("scopes-object", "post", "/tokens", {**OK, "scopes": {"tenant:read": True}}, 400, INV, "scopes"),
    ("scopes-empty", "post", "/tokens", {**OK, "scopes": []}, 400, INV, "scopes"),
    ("scopes-null", "post", "/tokens", {**OK, "scopes": None}, 400, INV, "scopes"),
    ("scopes-unknown", "post", "/tokens", {**OK, "scopes": ["root"]}, 400, INV, "scopes.0"),
    ("scopes-number", "post", "/tokens", {**OK, "scopes": [1]}, 400, INV, "scopes.0"),
    ("scopes-too-many", "post", "/tokens", {**OK, "scopes": TOO_MANY_SCOPES}, 400, INV, "scopes"),
    ("expires-past", "post", "/tokens", {**OK, "expires_at": PAST}, 400, INV, "expires_at"),
    ("expires-garbage", "post", "/tokens", {**OK, "expires_at": "next tuesday"}, 400, INV, "expires_at"),
    ("expires-number", "post", "/tokens", {**OK, "expires_at": 1893456000}, 400, INV, "expires_at"),
    ("expires-object", "post", "/tokens", {**OK, "expires_at": {}}, 400, INV, "expires_at"),
    ("unknown-field", "post", "/tokens", {**OK, "user": "someone@example.com"}, 400, INV, "user"),
    ("unknown-field-tenant", "post", "/tokens", {**OK, "tenant": "other"}, 400, INV, "tenant"),
    ("detail-bad-uuid", "get", "/tokens/not-a-uuid", None, 404, "not_found", None),
    ("revoke-bad-uuid", "delete", "/tokens/1234", None, 404, "not_found", None),
]
# fmt: on


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("auth", ["session", "token"])
def test_bad_input(
    owner: Actor, auth: str, method: str, path: str, body: Any, status: int, code: str, field: str | None
) -> None:
    client = owner.session_client() if auth == "session" else owner.token_client()
    before = row_counts()

    response = send(client, method, owner.url(path), body)

    assert_error(response, status, code, field)
    assert row_counts() == before
    owner.token.refresh_from_db()
    assert owner.token.revoked_at is None


def test_duplicate_scopes_are_collapsed(owner: Actor) -> None:
    response = send(
        owner.session_client(), "post", owner.url("/tokens"), {**OK, "scopes": ["tenant:read"] * 2}
    )

    assert response.status_code == 201
    assert response.json()["scopes"] == ["tenant:read"]
