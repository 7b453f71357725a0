"""Idempotency-Key on create endpoints: replays, conflicts, scope per tenant, errors not stored, expiry,
purge, and two concurrent requests with one key creating one object."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.core import tasks
from apps.core.models import IdempotencyKey
from apps.tenants import tokens as token_services
from apps.tenants.models import Invitation, Membership, Tenant
from tests.conftest import Actor
from tests.factories import MembershipFactory, UserFactory, make_token
from tests.tenants.support import assert_error

KEY = "Idempotency-Key"


def _post(client: APIClient, url: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {KEY: key} if key is not None else None
    return client.post(url, body, format="json", headers=headers)


def _session(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# Each create endpoint: how to call it for an actor, a body, another body, and how to count what it made.
def _tokens(actor: Actor) -> tuple[APIClient, str, dict, dict, Callable[[], int]]:
    count = ApiToken.objects.filter(tenant=actor.tenant, name__startswith="idem").count
    return (
        actor.token_client(),
        actor.url("/tokens"),
        {"name": "idem-ci", "scopes": ["instances:read"]},
        {"name": "idem-ci", "scopes": ["instances:write"]},
        count,
    )


def _invitations(actor: Actor) -> tuple[APIClient, str, dict, dict, Callable[[], int]]:
    count = Invitation.objects.filter(tenant=actor.tenant).count
    return (
        actor.token_client(),
        actor.url("/invitations"),
        {"email": "ada@example.com", "role": "member"},
        {"email": "ada@example.com", "role": "viewer"},
        count,
    )


def _tenants(actor: Actor) -> tuple[APIClient, str, dict, dict, Callable[[], int]]:
    count = Membership.objects.filter(user=actor.user).count  # the creator's memberships = tenants made
    return (
        actor.session_client(),
        "/api/v1/tenants",
        {"name": "Idem Research", "slug": "idem-research"},
        {"name": "Idem Research 2", "slug": "idem-research-2"},
        count,
    )


ENDPOINTS = pytest.mark.parametrize(
    "endpoint", [_tokens, _invitations, _tenants], ids=lambda f: f.__name__[1:]
)


@pytest.mark.django_db
@ENDPOINTS
def test_same_key_and_body_replays_the_first_response(endpoint: Callable, owner: Actor) -> None:
    client, url, body, _other, count = endpoint(owner)
    before = count()

    first = _post(client, url, body, "key-1")
    second = _post(client, url, body, "key-1")

    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert count() == before + 1
    assert IdempotencyKey.objects.filter(key="key-1").count() == 1


@pytest.mark.django_db
@ENDPOINTS
def test_same_key_with_another_body_answers_422(endpoint: Callable, owner: Actor) -> None:
    client, url, body, other, count = endpoint(owner)
    assert _post(client, url, body, "key-2").status_code == 201
    before = count()

    response = _post(client, url, other, "key-2")

    error = assert_error(response, 422, "idempotency_key_reused", field=KEY)
    assert KEY in error["message"]
    assert count() == before


@pytest.mark.django_db
@ENDPOINTS
def test_without_a_key_each_request_creates(endpoint: Callable, owner: Actor) -> None:
    client, url, body, other, count = endpoint(owner)
    before = count()
    assert _post(client, url, body, None).status_code == 201
    assert _post(client, url, other, None).status_code == 201
    assert count() == before + 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_a_key_is_scoped_to_its_tenant(make_actor: Callable[..., Actor]) -> None:
    a = make_actor()
    b = make_actor()
    MembershipFactory(tenant=b.tenant, user=a.user)  # one person, owner of both tenants
    client = a.session_client()
    body = {"email": "ada@example.com", "role": "member"}

    in_a = _post(client, a.url("/invitations"), body, "shared-key")
    in_b = _post(client, b.url("/invitations"), body, "shared-key")

    assert in_a.status_code == in_b.status_code == 201
    assert "Idempotent-Replayed" not in in_b
    assert in_a.json()["id"] != in_b.json()["id"]
    assert Invitation.objects.filter(tenant=a.tenant).count() == 1
    assert Invitation.objects.filter(tenant=b.tenant).count() == 1
    assert set(IdempotencyKey.objects.values_list("scope", flat=True)) == {
        f"tenant:{a.tenant.pk}",
        f"tenant:{b.tenant.pk}",
    }


@pytest.mark.django_db
def test_tenant_less_creates_are_scoped_to_the_user() -> None:
    ada, bob = UserFactory(), UserFactory()

    first = _post(_session(ada), "/api/v1/tenants", {"name": "Ada Lab"}, "same")
    second = _post(_session(bob), "/api/v1/tenants", {"name": "Bob Lab"}, "same")

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert Tenant.objects.count() == 2


@pytest.mark.django_db
def test_errors_are_not_stored_so_a_corrected_request_may_reuse_the_key(owner: Actor) -> None:
    client = owner.token_client()

    bad = _post(client, owner.url("/tokens"), {"name": "ci", "scopes": ["nope:read"]}, "fix-me")
    assert_error(bad, 400, "invalid", field="scopes.0")
    assert not IdempotencyKey.objects.filter(key="fix-me").exists()

    good = _post(client, owner.url("/tokens"), {"name": "ci", "scopes": ["instances:read"]}, "fix-me")
    assert good.status_code == 201, good.content
    assert "Idempotent-Replayed" not in good
    assert ApiToken.objects.filter(tenant=owner.tenant, name="ci").count() == 1


@pytest.mark.django_db
def test_a_refused_create_is_not_stored_either(owner: Actor) -> None:
    """A domain refusal (409 already a member) rolls back the key with the rest."""
    client = owner.token_client()
    response = _post(client, owner.url("/invitations"), {"email": owner.user.email, "role": "member"}, "k")
    assert_error(response, 409, "already_member")
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_key_length_limit(owner: Actor) -> None:
    client = owner.token_client()
    body = {"name": "ci", "scopes": ["instances:read"]}

    too_long = _post(client, owner.url("/tokens"), body, "k" * 256)
    assert_error(too_long, 400, "invalid", field=KEY)
    assert not ApiToken.objects.filter(name="ci").exists()

    longest = _post(client, owner.url("/tokens"), body, "k" * 255)
    assert longest.status_code == 201


@pytest.mark.django_db
def test_an_expired_key_is_replaced(owner: Actor) -> None:
    client = owner.token_client()
    body = {"name": "idem-ci", "scopes": ["instances:read"]}
    first = _post(client, owner.url("/tokens"), body, "old")
    IdempotencyKey.objects.filter(key="old").update(expires_at=timezone.now() - timedelta(seconds=1))

    again = _post(client, owner.url("/tokens"), body, "old")

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert again.json()["id"] != first.json()["id"]
    record = IdempotencyKey.objects.get(key="old")
    assert record.expires_at > timezone.now()
    assert record.response_body["id"] == again.json()["id"]


@pytest.mark.django_db
def test_purge_task_removes_only_expired_keys(owner: Actor) -> None:
    now = timezone.now()
    for key, expires_at in [
        ("gone-1", now - timedelta(hours=1)),
        ("gone-2", now),
        ("kept", now + timedelta(hours=1)),
    ]:
        IdempotencyKey.objects.create(
            scope=f"tenant:{owner.tenant.pk}",
            key=key,
            user=owner.user,
            method="POST",
            path="/x",
            request_hash="0" * 64,
            expires_at=expires_at,
        )

    assert tasks.purge_expired_idempotency_keys.delay().get() == 2

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["kept"]


# --- concurrency ---------------------------------------------------------------------------------------


def _blocked_backends() -> int:
    """Other sessions of this database waiting on a lock (the second request, on the key's unique index)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_create_one_object(monkeypatch: pytest.MonkeyPatch) -> None:
    user = UserFactory()
    tenant = MembershipFactory(user=user).tenant
    _token, secret = make_token(user=user, tenant=tenant)
    url = f"/api/v1/tenants/{tenant.slug}/tokens"
    body = {"name": "race", "scopes": ["instances:read"]}

    # Whoever wins the key holds its transaction open until the other request is blocked on that key, so
    # the two really overlap (bounded: without a waiter it goes on after a while, and the test still holds).
    real_create = token_services.token_create

    def slow_create(**kwargs: Any) -> Any:
        created = real_create(**kwargs)
        for _ in range(200):
            if _blocked_backends():
                break
            threading.Event().wait(0.05)
        return created

    monkeypatch.setattr(token_services, "token_create", slow_create)

    start = threading.Barrier(2)
    responses: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
            start.wait()
            responses.append(client.post(url, body, format="json", headers={KEY: "race-key"}))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert sorted(r.status_code for r in responses) == [201, 201], [r.content for r in responses]
    assert sorted(r.get("Idempotent-Replayed", "") for r in responses) == ["", "true"]
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert ApiToken.objects.filter(tenant=tenant, name="race").count() == 1
    assert IdempotencyKey.objects.filter(key="race-key").count() == 1


@pytest.mark.django_db
def test_accepting_an_invitation_replays_instead_of_conflicting(owner: Actor) -> None:
    from tests.tenants.support import make_invitation

    invitee = UserFactory()
    _, secret = make_invitation(tenant=owner.tenant, invited_by=owner.user, email=invitee.email)
    client = _session(invitee)

    first = _post(client, "/api/v1/invitations/accept", {"token": secret}, "accept-1")
    again = _post(client, "/api/v1/invitations/accept", {"token": secret}, "accept-1")
    without_key = _post(client, "/api/v1/invitations/accept", {"token": secret}, None)

    assert first.status_code == again.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert_error(without_key, 409, "invitation_accepted")
    assert Membership.objects.filter(tenant=owner.tenant, user=invitee).count() == 1
