"""Bad input to the tenant, member and invitation endpoints: 4xx naming the field, never 500, and nothing
written."""

from __future__ import annotations

from typing import Any

import pytest

from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.tenants.support import assert_error, make_invitation, row_counts, send

LONG_EMAIL = "a" * 250 + "@example.com"  # 262 characters
BAD_JSON = '{"name": "unterminated'
TENANTS = "/api/v1/tenants"
ACCEPT = "/api/v1/invitations/accept"
INV = "invalid"

# (id, method, path, body, status, code, field); paths are relative to the tenant unless they start with /api.
# fmt: off
CASES: list[tuple[str, str, str, Any, int, str, str | None]] = [
    # POST /api/v1/tenants
    ("create-malformed-json", "post", TENANTS, BAD_JSON, 400, "parse_error", None),
    ("create-not-an-object", "post", TENANTS, "[1, 2]", 400, INV, "non_field_errors"),
    ("create-name-missing", "post", TENANTS, {}, 400, INV, "name"),
    ("create-name-null", "post", TENANTS, {"name": None}, 400, INV, "name"),
    ("create-name-empty", "post", TENANTS, {"name": ""}, 400, INV, "name"),
    ("create-name-number", "post", TENANTS, {"name": 123}, 400, INV, "name"),
    ("create-name-bool", "post", TENANTS, {"name": True}, 400, INV, "name"),
    ("create-name-object", "post", TENANTS, {"name": {"a": 1}}, 400, INV, "name"),
    ("create-name-list", "post", TENANTS, {"name": ["a"]}, 400, INV, "name"),
    ("create-name-too-long", "post", TENANTS, {"name": "n" * 101}, 400, INV, "name"),
    ("create-slug-too-long", "post", TENANTS, {"name": "x", "slug": "s" * 41}, 400, INV, "slug"),
    ("create-slug-too-short", "post", TENANTS, {"name": "x", "slug": "ab"}, 400, INV, "slug"),
    ("create-slug-chars", "post", TENANTS, {"name": "x", "slug": "no spaces!"}, 400, INV, "slug"),
    ("create-slug-upper", "post", TENANTS, {"name": "x", "slug": "Acme"}, 400, INV, "slug"),
    ("create-slug-list", "post", TENANTS, {"name": "x", "slug": ["acme"]}, 400, INV, "slug"),
    ("create-unknown-field", "post", TENANTS, {"name": "x", "status": "active"}, 400, INV,
     "status"),
    # PATCH /tenants/{slug}
    ("update-malformed-json", "patch", "", BAD_JSON, 400, "parse_error", None),
    ("update-empty", "patch", "", {}, 400, INV, "name"),
    ("update-name-too-long", "patch", "", {"name": "n" * 101}, 400, INV, "name"),
    ("update-name-number", "patch", "", {"name": 7}, 400, INV, "name"),
    ("update-name-object", "patch", "", {"name": {"x": "y"}}, 400, INV, "name"),
    ("update-unknown-field", "patch", "", {"name": "x", "status": "closed"}, 400, INV, "status"),
    # PATCH /tenants/{slug}/members/{id}
    ("role-malformed-json", "patch", "/members/{member}", BAD_JSON, 400, "parse_error", None),
    ("role-missing", "patch", "/members/{member}", {}, 400, INV, "role"),
    ("role-invalid", "patch", "/members/{member}", {"role": "superuser"}, 400, INV, "role"),
    ("role-wrong-case", "patch", "/members/{member}", {"role": "Admin"}, 400, INV, "role"),
    ("role-number", "patch", "/members/{member}", {"role": 1}, 400, INV, "role"),
    ("role-null", "patch", "/members/{member}", {"role": None}, 400, INV, "role"),
    ("role-unknown-field", "patch", "/members/{member}", {"role": "viewer", "user": 1}, 400, INV, "user"),
    ("member-bad-uuid", "patch", "/members/not-a-uuid", {"role": "viewer"}, 404, "not_found", None),
    ("member-bad-uuid-get", "get", "/members/123", None, 404, "not_found", None),
    ("member-bad-uuid-delete", "delete", "/members/zzz", None, 404, "not_found", None),
    # POST /tenants/{slug}/invitations
    ("invite-malformed-json", "post", "/invitations", BAD_JSON, 400, "parse_error", None),
    ("invite-email-missing", "post", "/invitations", {"role": "member"}, 400, INV, "email"),
    ("invite-email-invalid", "post", "/invitations", {"email": "nope", "role": "member"}, 400, INV,
     "email"),
    ("invite-email-too-long", "post", "/invitations", {"email": LONG_EMAIL, "role": "member"}, 400, INV,
     "email"),
    ("invite-email-list", "post", "/invitations", {"email": ["a@example.com"], "role": "member"}, 400,
     "invalid", "email"),
    ("invite-role-invalid", "post", "/invitations", {"email": "a@example.com", "role": "god"}, 400, INV,
     "role"),
    ("invite-role-missing", "post", "/invitations", {"email": "a@example.com"}, 400, INV, "role"),
    ("invite-unknown-field", "post", "/invitations", {"email": "a@example.com", "role": "member", "ttl": 5},
     400, "invalid", "ttl"),
    ("invitation-bad-uuid", "delete", "/invitations/not-a-uuid", None, 404, "not_found", None),
    # POST /api/v1/invitations/accept
    ("accept-malformed-json", "post", ACCEPT, BAD_JSON, 400, "parse_error", None),
    ("accept-token-missing", "post", ACCEPT, {}, 400, INV, "token"),
    ("accept-token-empty", "post", ACCEPT, {"token": ""}, 400, INV, "token"),
    ("accept-token-number", "post", ACCEPT, {"token": 12345}, 400, INV, "token"),
    ("accept-token-too-long", "post", ACCEPT, {"token": "t" * 201}, 400, INV,
     "token"),
    ("accept-unknown-field", "post", ACCEPT, {"token": "t", "role": "owner"}, 400,
     "invalid", "role"),
]
# fmt: on


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    owner: Actor,
    make_actor: Any,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    invitation, _ = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    path = path.format(member=member.membership.pk, invitation=invitation.pk)
    url = path if path.startswith("/api/") else owner.url(path)
    before = row_counts()

    response = send(owner.session_client(), method, url, body)

    assert_error(response, status, code, field)
    assert row_counts() == before
    member.membership.refresh_from_db()
    assert member.membership.role == Role.MEMBER
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == "active"


def test_an_oversized_body_is_413(owner: Actor) -> None:
    before = row_counts()

    response = send(owner.session_client(), "post", "/api/v1/tenants", '{"name": "' + "x" * 2_000_000 + '"}')

    assert_error(response, 413, "request_too_large")
    assert row_counts() == before


def test_a_wrong_content_type_is_415(owner: Actor) -> None:
    response = owner.session_client().post("/api/v1/tenants", "name=x", content_type="text/plain")

    assert_error(response, 415, "unsupported_media_type")
