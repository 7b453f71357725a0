"""A token that creates tokens: never stronger than itself (scopes, expiry), and revoked together with it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.accounts import services
from apps.accounts.models import ApiToken, User
from apps.audit.models import AuditEvent
from apps.core.errors import Conflict
from apps.tenants import tokens
from apps.tenants.roles import Role
from tests.conftest import Actor, login_staff
from tests.factories import make_token
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def _narrow(actor: Actor, scopes: list[str], **extra: Any) -> tuple[ApiToken, str]:
    return make_token(user=actor.user, tenant=actor.tenant, token_scopes=scopes, **extra)


def _create(actor: Actor, plaintext: str, body: dict[str, Any]) -> Any:
    return actor.token_client(plaintext).post(actor.url("/tokens"), body, format="json")


def test_a_token_cannot_create_a_token_with_a_scope_it_lacks(owner: Actor) -> None:
    """The hole: the check was the user's role (an owner may grant everything), not the calling token."""
    _parent, plaintext = _narrow(owner, ["tenant:admin", "instances:read"])

    response = _create(
        owner, plaintext, {"name": "escalated", "scopes": ["instances:write", "billing:write"]}
    )

    error = assert_error(response, 400, "invalid", field="scopes")
    assert "'billing:write'" in error["message"]
    assert error["fields"]["scopes"] == [
        "The API token making the request lacks 'billing:write'.",
        "The API token making the request lacks 'instances:write'.",
    ]
    assert not ApiToken.objects.filter(name="escalated").exists()
    assert not AuditEvent.objects.filter(action="token.create").exists()


def test_a_token_may_create_a_token_with_a_subset_of_its_scopes(owner: Actor) -> None:
    parent, plaintext = _narrow(owner, ["tenant:admin", "instances:write"])

    # instances:read is implied by instances:write, tenant:read by tenant:admin: both are held.
    response = _create(owner, plaintext, {"name": "reader", "scopes": ["instances:read", "tenant:read"]})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["parent"] == str(parent.pk)
    assert body["scopes"] == ["instances:read", "tenant:read"]
    child = ApiToken.objects.get(pk=body["id"])
    assert child.parent_id == parent.pk
    assert owner.token_client(body["token"]).get(owner.url("/instances")).status_code == 200
    event = AuditEvent.objects.get(action="token.create")
    assert event.changes["parent"] == parent.prefix


def test_a_child_expires_no_later_than_its_parent(owner: Actor) -> None:
    ends = timezone.now() + timedelta(days=1)
    _parent, plaintext = _narrow(owner, ["tenant:admin"], expires_at=ends)

    later = _create(
        owner, plaintext, {"name": "later", "scopes": ["tenant:read"], "expires_at": _iso(ends, 30)}
    )
    unset = _create(owner, plaintext, {"name": "unset", "scopes": ["tenant:read"]})
    sooner = _create(
        owner, plaintext, {"name": "sooner", "scopes": ["tenant:read"], "expires_at": _iso(ends, -1)}
    )

    assert_error(later, 400, "invalid", field="expires_at")
    assert not ApiToken.objects.filter(name="later").exists()
    assert unset.status_code == 201 and parse_datetime(unset.json()["expires_at"]) == ends
    assert sooner.status_code == 201 and parse_datetime(sooner.json()["expires_at"]) == ends - timedelta(
        hours=1
    )


def _iso(base: Any, hours: int) -> str:
    return (base + timedelta(hours=hours)).isoformat()


def test_a_session_is_bounded_by_the_role_only(owner: Actor) -> None:
    response = owner.session_client().post(
        owner.url("/tokens"), {"name": "full", "scopes": ["billing:write", "instances:write"]}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["parent"] is None
    assert response.json()["expires_at"] is None


def test_the_role_still_bounds_a_token_made_by_a_token(make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER)  # its token holds every scope, its role does not

    response = _create(viewer, viewer.token_plaintext, {"name": "x", "scopes": ["instances:write"]})

    assert_error(response, 400, "invalid", field="scopes")


def test_revoking_a_token_revokes_the_tokens_made_from_it_at_once(owner: Actor) -> None:
    _root, root_plaintext = _narrow(owner, ["tenant:admin", "instances:read"])
    child = _create(
        owner, root_plaintext, {"name": "child", "scopes": ["tenant:admin", "instances:read"]}
    ).json()
    grandchild = _create(owner, child["token"], {"name": "grandchild", "scopes": ["instances:read"]}).json()
    sibling, sibling_plaintext = _narrow(owner, ["instances:read"])  # made by the session: not related
    for plaintext in (root_plaintext, child["token"], grandchild["token"]):
        assert owner.token_client(plaintext).get(ME).status_code == 200

    response = owner.session_client().delete(owner.url(f"/tokens/{_root.pk}"))

    assert response.status_code == 200
    for plaintext in (root_plaintext, child["token"], grandchild["token"]):
        assert_error(owner.token_client(plaintext).get(ME), 401)
    assert owner.token_client(sibling_plaintext).get(ME).status_code == 200
    events = AuditEvent.objects.filter(action="token.revoke").order_by("id")
    assert [e.metadata["prefix"] for e in events] == [
        _root.prefix,
        child["prefix"],
        grandchild["prefix"],
    ]
    assert events[0].metadata["descendants_revoked"] == 2
    assert all(e.metadata["reason"] == "parent_revoked" for e in events[1:])
    assert all(e.metadata["revoked_with"] == _root.prefix for e in events[1:])
    sibling.refresh_from_db()
    assert sibling.revoked_at is None


def test_a_token_that_revokes_itself_takes_its_children_with_it(owner: Actor) -> None:
    parent, plaintext = _narrow(owner, ["tenant:admin"])
    child = _create(owner, plaintext, {"name": "child", "scopes": ["tenant:read"]}).json()

    assert owner.token_client(plaintext).delete(owner.url(f"/tokens/{parent.pk}")).status_code == 200

    assert_error(owner.token_client(child["token"]).get(ME), 401)


def test_a_revoked_token_cannot_add_a_child(owner: Actor) -> None:
    """The race token_create's lock closes: a request that authenticated just before its token was revoked
    finds the token revoked when it comes to create the child."""
    parent, _plaintext = _narrow(owner, ["tenant:admin"])
    services.token_revoke(actor=owner.user, token=parent)

    with pytest.raises(Conflict):
        tokens.token_create(
            user=owner.user, membership=owner.membership, name="late", scopes=["tenant:read"], parent=parent
        )
    assert not ApiToken.objects.filter(name="late").exists()


def test_the_admin_revoke_action_cascades_and_tolerates_selecting_both(owner: Actor, staff: User) -> None:
    parent, plaintext = _narrow(owner, ["tenant:admin"])
    child = ApiToken.objects.get(
        pk=_create(owner, plaintext, {"name": "c", "scopes": ["tenant:read"]}).json()["id"]
    )
    client = login_staff(Client(), staff)

    response = client.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [str(parent.pk), str(child.pk)]}
    )

    assert response.status_code == 302
    child.refresh_from_db()
    assert child.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke", actor_user=staff).count() == 2


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser(email="staff@example.com", password="x-staff-password-1")
