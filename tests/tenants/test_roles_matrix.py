"""The roles matrix, endpoint by endpoint, for sessions and for full-scope API tokens.

The expected statuses are written out here on purpose, not derived from ROLE_PERMISSIONS: a change to the
permission table that changes who may do what must change this table too (and docs/roles.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.tenants.models import Invitation
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import MembershipFactory, UserFactory, make_token
from tests.tenants.support import assert_error, make_invitation

ROLES = ("owner", "admin", "member", "billing", "viewer")
F = 403  # refused with code role_forbidden
NF = 404  # not visible to this role at all

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                             owner admin member billing viewer
    "GET tenant":                 (200, 200, 200, 200, 200),
    "PATCH tenant":               (200, 200, F,   F,   F),
    "GET members":                (200, 200, 200, 200, 200),
    "GET member":                 (200, 200, 200, 200, 200),
    "PATCH member role":          (200, 200, F,   F,   F),
    "DELETE other member":        (204, 204, F,   F,   F),
    "GET invitations":            (200, 200, F,   F,   F),
    "POST invitation":            (201, 201, F,   F,   F),
    "GET invitation":             (200, 200, F,   F,   F),
    "DELETE invitation":          (200, 200, F,   F,   F),
    "GET tokens":                 (200, 200, 200, 200, 200),
    "POST token":                 (201, 201, 201, 201, 201),
    "GET own token":              (200, 200, 200, 200, 200),
    "DELETE own token":           (200, 200, 200, 200, 200),
    # Others' tokens are invisible to non-managers (the list shows them only their own), hence 404.
    "GET other's token":          (200, 200, NF,  NF,  NF),
    "DELETE other's token":       (200, 200, NF,  NF,  NF),
    "GET audit-events":           (200, 200, F,   F,   F),
}
# fmt: on


@dataclass
class World:
    actor: Actor
    other_member: Any
    other_token: Any
    own_token: Any
    invitation: Invitation


def _request(endpoint: str, world: World) -> tuple[str, str, dict[str, Any] | None]:
    other, inv = world.other_member, world.invitation
    return {
        "GET tenant": ("get", "", None),
        "PATCH tenant": ("patch", "", {"name": "Renamed"}),
        "GET members": ("get", "/members", None),
        "GET member": ("get", f"/members/{other.pk}", None),
        "PATCH member role": ("patch", f"/members/{other.pk}", {"role": "viewer"}),
        "DELETE other member": ("delete", f"/members/{other.pk}", None),
        "GET invitations": ("get", "/invitations", None),
        "POST invitation": ("post", "/invitations", {"email": "new@example.com", "role": "member"}),
        "GET invitation": ("get", f"/invitations/{inv.pk}", None),
        "DELETE invitation": ("delete", f"/invitations/{inv.pk}", None),
        "GET tokens": ("get", "/tokens", None),
        "POST token": ("post", "/tokens", {"name": "ci", "scopes": ["tenant:read"]}),
        "GET own token": ("get", f"/tokens/{world.own_token.pk}", None),
        "DELETE own token": ("delete", f"/tokens/{world.own_token.pk}", None),
        "GET other's token": ("get", f"/tokens/{world.other_token.pk}", None),
        "DELETE other's token": ("delete", f"/tokens/{world.other_token.pk}", None),
        "GET audit-events": ("get", "/audit-events", None),
    }[endpoint]


@pytest.fixture
def build_world(make_actor: Callable[..., Actor]) -> Callable[[str], World]:
    def build(role: str) -> World:
        actor = make_actor(role)
        if role != Role.OWNER:
            MembershipFactory(tenant=actor.tenant, role=Role.OWNER)
        other = MembershipFactory(tenant=actor.tenant, user=UserFactory(), role=Role.MEMBER)
        other_token, _ = make_token(user=other.user, tenant=actor.tenant, name="theirs")
        own_token, _ = make_token(user=actor.user, tenant=actor.tenant, name="mine")
        invitation, _ = make_invitation(
            tenant=actor.tenant, invited_by=actor.user, email="pending@example.com"
        )
        return World(actor, other, other_token, own_token, invitation)

    return build


CASES = [
    (endpoint, role, expected[i]) for endpoint, expected in MATRIX.items() for i, role in enumerate(ROLES)
]


@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize(("endpoint", "role", "expected"), CASES, ids=[f"{e}-{r}" for e, r, _ in CASES])
def test_roles_matrix(
    build_world: Callable[[str], World], endpoint: str, role: str, expected: int, auth: str
) -> None:
    world = build_world(role)
    client = world.actor.session_client() if auth == "session" else world.actor.token_client()
    method, suffix, body = _request(endpoint, world)
    audit_before = AuditEvent.objects.count()

    response = getattr(client, method)(world.actor.url(suffix), body, format="json")

    if expected == F:
        error = assert_error(response, 403, "role_forbidden")
        assert f"'{role}'" in error["message"]
        assert AuditEvent.objects.count() == audit_before
    elif expected == NF:
        assert_error(response, 404, "not_found")
        assert AuditEvent.objects.count() == audit_before
    else:
        assert response.status_code == expected, response.content
        if method != "get":
            assert AuditEvent.objects.count() > audit_before


def test_matrix_covers_every_role_and_is_not_trivial() -> None:
    # A guard against the table being edited into "everyone may do everything" or "nobody may".
    columns = list(zip(*MATRIX.values(), strict=True))
    assert len(columns) == len(ROLES) == len(Role)
    assert all(status < 300 for status in columns[ROLES.index("owner")])
    assert any(status == F for status in columns[ROLES.index("viewer")])
