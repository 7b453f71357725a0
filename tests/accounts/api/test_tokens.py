"""API tokens: create (the secret shown once), list, show, revoke; scopes bounded by the creator's role."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts import token_secrets
from apps.accounts.models import ApiToken
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import make_token
from tests.tenants.support import assert_error, database_text


def test_create_returns_the_secret_once(owner: Actor) -> None:
    response = owner.session_client().post(
        owner.url("/tokens"), {"name": "ci", "scopes": ["instances:write", "billing:read"]}
    )

    assert response.status_code == 201
    body = response.json()
    secret = body["token"]
    assert token_secrets.TOKEN_RE.match(secret)
    assert body["prefix"] == secret.split("_", 2)[1]
    assert body["scopes"] == ["billing:read", "instances:write"]
    assert body["user"] == owner.user.email
    assert body["active"] is True
    listed = owner.session_client().get(owner.url("/tokens"))
    shown = owner.session_client().get(owner.url(f"/tokens/{body['id']}"))
    for later in (listed, shown):
        assert later.status_code == 200
        assert secret not in later.content.decode()
        assert secret.split("_", 2)[2] not in later.content.decode()
    assert "token" not in shown.json()
    assert all("token" not in row for row in listed.json()["results"])


def test_the_new_secret_authenticates(owner: Actor) -> None:
    body = owner.session_client().post(owner.url("/tokens"), {"name": "ci", "scopes": ["tenant:read"]}).json()

    response = owner.token_client(body["token"]).get(owner.url())

    assert response.status_code == 200


@pytest.mark.parametrize("idempotency_key", [None, "create-token-1"])
def test_the_plaintext_is_nowhere_in_the_database(owner: Actor, idempotency_key: str | None) -> None:
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    response = owner.token_client().post(
        owner.url("/tokens"), {"name": "ci", "scopes": ["tenant:admin"]}, format="json", **headers
    )
    assert response.status_code == 201
    secret = response.json()["token"]
    owner.token_client(secret).get(owner.url())  # used once, so last_used_at is written too

    everything = database_text()

    assert secret not in everything
    assert secret.split("_", 2)[2] not in everything
    assert response.json()["prefix"] in everything  # the readable prefix is kept, and only it
    stored = ApiToken.objects.get(pk=response.json()["id"])
    assert stored.secret_hash == token_secrets.digest(secret)


def test_idempotent_replay_does_not_create_a_second_token(owner: Actor) -> None:
    body = {"name": "ci", "scopes": ["tenant:read"]}
    headers = {"HTTP_IDEMPOTENCY_KEY": "token-replay-1"}
    first = owner.token_client().post(owner.url("/tokens"), body, format="json", **headers)
    second = owner.token_client().post(owner.url("/tokens"), body, format="json", **headers)

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert token_secrets.TOKEN_RE.match(first.json()["token"])
    assert second.json()["token"] is None  # the secret is shown once, not replayed from storage
    assert ApiToken.objects.filter(name="ci").count() == 1


def test_write_scopes_imply_read(owner: Actor) -> None:
    body = owner.session_client().post(owner.url("/tokens"), {"name": "t", "scopes": ["tenant:admin"]}).json()
    client = owner.token_client(body["token"])

    assert client.get(owner.url("/members")).status_code == 200  # tenant:read, implied
    assert body["scopes"] == ["tenant:admin"]


@pytest.mark.parametrize(
    ("role", "scope"),
    [
        (Role.VIEWER, "instances:write"),
        (Role.VIEWER, "billing:read"),
        (Role.MEMBER, "billing:write"),
        (Role.BILLING, "instances:read"),
        (Role.ADMIN, "billing:write"),
    ],
)
def test_scopes_beyond_the_creators_role_are_refused(
    make_actor: Callable[..., Actor], role: str, scope: str
) -> None:
    actor = make_actor(role)
    count = ApiToken.objects.count()

    response = actor.session_client().post(
        actor.url("/tokens"), {"name": "t", "scopes": ["tenant:read", scope]}
    )

    error = assert_error(response, 400, "invalid", field="scopes")
    assert scope in error["message"]
    assert ApiToken.objects.count() == count


@pytest.mark.parametrize(
    ("role", "scope"),
    [(Role.MEMBER, "instances:write"), (Role.BILLING, "billing:write"), (Role.OWNER, "billing:write")],
)
def test_scopes_within_the_role_are_granted(make_actor: Callable[..., Actor], role: str, scope: str) -> None:
    actor = make_actor(role)

    response = actor.session_client().post(actor.url("/tokens"), {"name": "t", "scopes": [scope]})

    assert response.status_code == 201
    assert response.json()["scopes"] == [scope]


def test_unknown_scope_is_400(owner: Actor) -> None:
    response = owner.session_client().post(owner.url("/tokens"), {"name": "t", "scopes": ["instances:admin"]})

    assert_error(response, 400, "invalid", field="scopes.0")
    assert ApiToken.objects.count() == 1


def test_expiry_is_kept(owner: Actor) -> None:
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)

    response = owner.session_client().post(
        owner.url("/tokens"), {"name": "t", "scopes": ["tenant:read"], "expires_at": expires.isoformat()}
    )

    assert response.status_code == 201
    assert ApiToken.objects.get(pk=response.json()["id"]).expires_at == expires


def test_list_shows_own_tokens_to_members_and_all_to_admins(
    owner: Actor, make_actor: Callable[..., Actor]
) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)
    make_actor(Role.OWNER)  # another tenant's token

    def ids(actor: Actor) -> set[str]:
        return {row["id"] for row in actor.session_client().get(actor.url("/tokens")).json()["results"]}

    assert ids(member) == {str(member.token.pk)}
    assert ids(admin) == {str(owner.token.pk), str(member.token.pk), str(admin.token.pk)}


def test_revoke_own_token(owner: Actor) -> None:
    token, plaintext = make_token(user=owner.user, tenant=owner.tenant, name="old")

    response = owner.session_client().delete(owner.url(f"/tokens/{token.pk}"))

    assert response.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["revoked_at"] is not None
    assert_error(owner.token_client(plaintext).get("/api/v1/me"), 401)
    assert_error(owner.session_client().delete(owner.url(f"/tokens/{token.pk}")), 409, "token_revoked")


def test_a_token_can_revoke_itself(owner: Actor) -> None:
    response = owner.token_client().delete(owner.url(f"/tokens/{owner.token.pk}"))

    assert response.status_code == 200
    assert_error(owner.token_client().get("/api/v1/me"), 401)


def test_admin_revokes_a_members_token(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)

    response = admin.token_client().delete(admin.url(f"/tokens/{member.token.pk}"))

    assert response.status_code == 200
    member.token.refresh_from_db()
    assert member.token.revoked_at is not None


def test_another_tenants_token_is_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.OWNER)

    assert_error(owner.session_client().get(owner.url(f"/tokens/{stranger.token.pk}")), 404, "not_found")
    assert_error(owner.session_client().delete(owner.url(f"/tokens/{stranger.token.pk}")), 404, "not_found")
    stranger.token.refresh_from_db()
    assert stranger.token.revoked_at is None


def test_response_never_contains_the_hash(owner: Actor) -> None:
    response = owner.session_client().get(owner.url("/tokens"))

    assert "secret_hash" not in json.dumps(response.json())
    assert owner.token.secret_hash not in response.content.decode()
