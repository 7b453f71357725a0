"""GET /api/v1/me: the caller, their tenants and the token used."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.tenants.models import Membership
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.tenants.support import assert_error


def test_me_with_a_session_lists_every_tenant(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.MEMBER)
    other = make_actor(Role.OWNER)
    Membership.objects.create(tenant=other.tenant, user=actor.user, role=Role.VIEWER)

    response = actor.session_client().get("/api/v1/me")

    assert response.status_code == 200
    body = response.json()
    assert body["email"] == actor.user.email
    assert body["email_verified"] is True
    assert body["token"] is None
    roles = {m["tenant"]: m["role"] for m in body["memberships"]}
    assert roles == {actor.tenant.slug: "member", other.tenant.slug: "viewer"}


def test_me_with_a_token_shows_only_the_tokens_tenant(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.MEMBER, token_scopes=("instances:read",))
    other = make_actor(Role.OWNER)
    Membership.objects.create(tenant=other.tenant, user=actor.user, role=Role.VIEWER)

    response = actor.token_client().get("/api/v1/me")

    assert response.status_code == 200
    body = response.json()
    assert [m["tenant"] for m in body["memberships"]] == [actor.tenant.slug]
    assert body["token"]["id"] == str(actor.token.pk)
    assert body["token"]["tenant"] == actor.tenant.slug
    assert body["token"]["scopes"] == ["instances:read"]
    assert actor.token_plaintext not in response.content.decode()


@pytest.mark.django_db
def test_me_needs_authentication() -> None:
    assert_error(APIClient().get("/api/v1/me"), 401, "not_authenticated")


def test_me_is_read_only(owner: Actor) -> None:
    assert_error(owner.token_client().post("/api/v1/me", {}), 405)
