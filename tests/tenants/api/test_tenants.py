"""Tenants: create, list, show, rename; suspended tenants read but create nothing; closed ones only read."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.tenants import services
from apps.tenants.models import Invitation, Membership, Tenant, TenantStatus
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import TenantFactory, UserFactory, make_token
from tests.tenants.support import assert_error, make_invitation


def _session(user: object) -> APIClient:
    client = APIClient()
    client.force_login(user)  # type: ignore[arg-type]
    return client


@pytest.mark.django_db
def test_create_makes_the_creator_owner_and_derives_the_slug() -> None:
    user = UserFactory()

    response = _session(user).post("/api/v1/tenants", {"name": "Acme Research Lab"})

    assert response.status_code == 201
    body = response.json()
    assert body["slug"] == "acme-research-lab"
    assert body["name"] == "Acme Research Lab"
    assert body["status"] == "active"
    assert body["role"] == "owner"
    tenant = Tenant.objects.get(slug="acme-research-lab")
    assert tenant.created_by == user
    assert Membership.objects.get(tenant=tenant).user == user
    assert Membership.objects.get(tenant=tenant).role == Role.OWNER


@pytest.mark.django_db
def test_create_with_an_explicit_slug() -> None:
    response = _session(UserFactory()).post("/api/v1/tenants", {"name": "Acme", "slug": "acme-gpu"})

    assert response.status_code == 201
    assert response.json()["slug"] == "acme-gpu"


@pytest.mark.django_db
def test_derived_slug_avoids_taken_and_reserved_slugs() -> None:
    TenantFactory(slug="acme")
    client = _session(UserFactory())

    taken = client.post("/api/v1/tenants", {"name": "Acme"}).json()["slug"]
    reserved = client.post("/api/v1/tenants", {"name": "Admin"}).json()["slug"]

    assert taken.startswith("acme-") and taken != "acme"
    assert reserved == "admin-org"


@pytest.mark.django_db
def test_duplicate_slug_is_400_naming_slug() -> None:
    TenantFactory(slug="acme")
    count = Tenant.objects.count()

    response = _session(UserFactory()).post("/api/v1/tenants", {"name": "Acme", "slug": "acme"})

    assert_error(response, 400, "invalid", field="slug")
    assert Tenant.objects.count() == count
    assert not AuditEvent.objects.filter(action="tenant.create").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["admin", "api", "www"])
def test_reserved_slug_is_400(slug: str) -> None:
    response = _session(UserFactory()).post("/api/v1/tenants", {"name": "Sneaky", "slug": slug})

    assert_error(response, 400, "invalid", field="slug")
    assert not Tenant.objects.filter(slug=slug).exists()


@pytest.mark.django_db
def test_unverified_email_cannot_create_a_tenant() -> None:
    response = _session(UserFactory(email_verified_at=None)).post("/api/v1/tenants", {"name": "Acme"})

    assert_error(response, 403, "email_unverified")
    assert Tenant.objects.count() == 0


@pytest.mark.django_db
def test_tenants_per_user_are_limited(settings: pytest.FixtureRequest) -> None:
    settings.MAX_TENANTS_PER_USER = 2  # type: ignore[attr-defined]
    client = _session(UserFactory())
    assert client.post("/api/v1/tenants", {"name": "One"}).status_code == 201
    assert client.post("/api/v1/tenants", {"name": "Two"}).status_code == 201

    response = client.post("/api/v1/tenants", {"name": "Three"})

    assert_error(response, 403, "tenant_limit")
    assert Tenant.objects.count() == 2


def test_api_tokens_cannot_create_tenants(owner: Actor) -> None:
    count = Tenant.objects.count()

    response = owner.token_client().post("/api/v1/tenants", {"name": "From a token"})

    assert_error(response, 403, "token_forbidden")
    assert Tenant.objects.count() == count


def test_list_shows_the_callers_tenants_with_their_role(make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER)
    second = make_actor(Role.OWNER)
    Membership.objects.create(tenant=second.tenant, user=viewer.user, role=Role.ADMIN)
    make_actor(Role.OWNER)  # a tenant the viewer is not in

    response = viewer.session_client().get("/api/v1/tenants")

    assert response.status_code == 200
    roles = {row["slug"]: row["role"] for row in response.json()["results"]}
    assert roles == {viewer.tenant.slug: "viewer", second.tenant.slug: "admin"}


def test_a_token_lists_only_its_own_tenant(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER)
    other = make_actor(Role.OWNER)
    Membership.objects.create(tenant=other.tenant, user=actor.user, role=Role.OWNER)

    response = actor.token_client().get("/api/v1/tenants")

    assert [row["slug"] for row in response.json()["results"]] == [actor.tenant.slug]


def test_show_a_tenant(owner: Actor) -> None:
    response = owner.token_client().get(owner.url())

    assert response.status_code == 200
    assert response.json()["slug"] == owner.tenant.slug
    assert response.json()["role"] == "owner"


def test_rename_a_tenant(owner: Actor) -> None:
    response = owner.token_client().patch(owner.url(), {"name": "New name"})

    assert response.status_code == 200
    assert response.json()["name"] == "New name"
    owner.tenant.refresh_from_db()
    assert owner.tenant.name == "New name"


def test_slug_cannot_be_changed(owner: Actor) -> None:
    response = owner.token_client().patch(owner.url(), {"name": "x", "slug": "other"})

    assert_error(response, 400, "invalid", field="slug")
    owner.tenant.refresh_from_db()
    assert owner.tenant.slug != "other"


def test_another_tenants_detail_is_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.OWNER)

    assert_error(owner.session_client().get(stranger.url()), 404, "not_found")
    assert_error(owner.session_client().patch(stranger.url(), {"name": "x"}), 404, "not_found")
    stranger.tenant.refresh_from_db()
    assert stranger.tenant.name != "x"


# Suspended and closed tenants


@pytest.fixture
def suspended(owner: Actor) -> Actor:
    services.tenant_suspend(actor=None, tenant=owner.tenant, reason="Unpaid invoice INV-42")
    return owner


def test_suspended_tenant_can_be_read(suspended: Actor) -> None:
    response = suspended.token_client().get(suspended.url())

    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    assert response.json()["status_reason"] == "Unpaid invoice INV-42"
    assert suspended.token_client().get(suspended.url("/tokens")).status_code == 200


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        ("/tokens", {"name": "ci", "scopes": ["tenant:read"]}),
        ("/invitations", {"email": "new@example.com", "role": "member"}),
    ],
)
def test_suspended_tenant_creates_nothing(suspended: Actor, suffix: str, body: dict) -> None:
    tokens, invitations = ApiToken.objects.count(), Invitation.objects.count()

    response = suspended.session_client().post(suspended.url(suffix), body)

    error = assert_error(response, 403, "tenant_suspended")
    assert "Unpaid invoice INV-42" in error["message"]
    assert (ApiToken.objects.count(), Invitation.objects.count()) == (tokens, invitations)


def test_suspended_tenant_cannot_be_renamed(suspended: Actor) -> None:
    assert_error(suspended.session_client().patch(suspended.url(), {"name": "x"}), 403, "tenant_suspended")


def test_suspended_tenant_can_still_revoke_a_token(suspended: Actor) -> None:
    token, _ = make_token(user=suspended.user, tenant=suspended.tenant, name="leaked")

    response = suspended.token_client().delete(suspended.url(f"/tokens/{token.pk}"))

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_closed_tenant_is_read_only_and_its_tokens_are_revoked(owner: Actor) -> None:
    pending, _ = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="later@example.com")
    services.tenant_close(actor=None, tenant=owner.tenant, reason="Customer asked")
    client = owner.session_client()

    assert client.get(owner.url()).json()["status"] == "closed"
    assert client.get(owner.url("/members")).status_code == 200
    assert_error(client.patch(owner.url(), {"name": "x"}), 403, "tenant_closed")
    assert_error(
        client.post(owner.url("/invitations"), {"email": "n@example.com", "role": "member"}),
        403,
        "tenant_closed",
    )
    assert_error(client.delete(owner.url(f"/invitations/{pending.pk}")), 403, "tenant_closed")
    assert_error(client.delete(owner.url(f"/members/{owner.membership.pk}")), 403, "tenant_closed")
    owner.token.refresh_from_db()
    assert owner.token.revoked_at is not None
    assert_error(owner.token_client().get(owner.url()), 401)
    pending.refresh_from_db()
    assert pending.state == "revoked"
    assert Tenant.objects.get(pk=owner.tenant.pk).status == TenantStatus.CLOSED
