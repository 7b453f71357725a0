"""API tokens: the list, creating one (its secret shown once), revoking, and who may do what."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.console.account.helpers import MakeActor, browser, has_csrf, html, page_url
from tests.factories import make_token

pytestmark = pytest.mark.django_db


def test_tokens_list_shows_name_prefix_scopes_expiry_last_used_and_revocation(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    used = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    mine, _ = make_token(
        user=member.user,
        tenant=member.tenant,
        name="laptop",
        token_scopes=["instances:write"],
        expires_at=datetime(2030, 1, 2, tzinfo=UTC),
        last_used_at=used,
    )
    gone, _ = make_token(user=member.user, tenant=member.tenant, name="old-ci", revoked_at=timezone.now())
    other, _ = make_token(user=admin.user, tenant=admin.tenant, name="admins-own")

    page = html(browser(member).get(page_url("tokens", member)))

    assert "laptop" in page and mine.prefix in page
    assert "instances:write" in page
    assert "2030-01-02 00:00 UTC" in page
    assert "2026-03-04 05:06 UTC" in page
    assert "old-ci" in page and "revoked" in page
    assert "admins-own" not in page  # a member sees only their own tokens
    assert page_url("token_revoke", member, token_id=mine.pk) in page
    assert page_url("token_revoke", member, token_id=gone.pk) not in page  # nothing left to revoke

    admin_page = html(browser(admin).get(page_url("tokens", admin)))
    assert "admins-own" in admin_page and "laptop" in admin_page and member.user.email in admin_page
    assert other.prefix in admin_page


def test_scope_checkboxes_offer_only_what_the_role_may_grant(make_actor: MakeActor) -> None:
    viewer = make_actor(Role.VIEWER)
    page = html(browser(viewer).get(page_url("tokens", viewer)))
    offered = set(re.findall(r'name="scopes" value="([^"]+)"', page))
    assert offered == {"tenant:read", "tenant:admin", "instances:read", "storage:read"}

    billing = make_actor(Role.BILLING)
    page = html(browser(billing).get(page_url("tokens", billing)))
    offered = set(re.findall(r'name="scopes" value="([^"]+)"', page))
    assert "billing:write" in offered and "instances:write" not in offered


def test_creating_a_token_shows_the_secret_once_and_it_works(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    client = browser(member)

    response = client.post(
        page_url("tokens", member),
        {"name": "ci", "scopes": ["instances:write"], "expires_at": "2031-05-06"},
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    secret = response.context["secret"]
    page = html(response)
    assert page.count(secret) == 1
    assert "shown only on this page" in page
    assert 'id="copy-secret"' in page and "<button" in page
    token = ApiToken.objects.get(name="ci", tenant=member.tenant)
    assert token.user == member.user
    assert token.scopes == ["instances:write"]
    assert token.expires_at == datetime(2031, 5, 6, tzinfo=UTC)
    assert secret not in token.secret_hash
    assert AuditEvent.objects.filter(action="token.create", target_id=str(token.pk)).exists()
    # The secret authenticates against the API...
    me = Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert me.status_code == 200
    assert me.json()["token"]["name"] == "ci"
    # ...and is never shown again.
    assert secret not in html(client.get(page_url("tokens", member)))


@pytest.mark.parametrize(
    ("form", "field_message"),
    [
        ({"name": "", "scopes": ["instances:read"]}, "This field may not be blank."),
        ({"name": "ci"}, "at least 1"),
        (
            {"name": "ci", "scopes": ["instances:read"], "expires_at": "tomorrow"},
            "Enter a date as YYYY-MM-DD.",
        ),
        ({"name": "ci", "scopes": ["instances:read"], "expires_at": "2001-01-01"}, "Must be in the future."),
        ({"name": "ci", "scopes": ["billing:write"]}, "cannot grant"),
        ({"name": "x" * 101, "scopes": ["instances:read"]}, "no more than 100 characters"),
    ],
)
def test_token_form_errors_are_shown_and_nothing_is_created(
    make_actor: MakeActor, form: dict[str, Any], field_message: str
) -> None:
    member = make_actor(Role.MEMBER)
    before = ApiToken.objects.count()

    response = browser(member).post(page_url("tokens", member), form)

    assert response.status_code == 400
    page = html(response)
    assert field_message in page
    assert 'role="alert"' in page
    assert ApiToken.objects.count() == before
    assert has_csrf(response)


def test_revoking_a_token_asks_first_then_revokes(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    token, plaintext = make_token(user=member.user, tenant=member.tenant, name="to-go")
    client = browser(member)
    url = page_url("token_revoke", member, token_id=token.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Revoke the token" in html(confirm) and token.prefix in html(confirm)
    assert has_csrf(confirm)
    token.refresh_from_db()
    assert token.revoked_at is None  # a GET changes nothing

    response = client.post(url)

    assert response.status_code == 302
    assert response.url == page_url("tokens", member)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoke", target_id=str(token.pk)).exists()
    assert Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 401
    again = client.post(url)
    assert again.status_code == 409
    assert "already revoked" in html(again)


def test_another_tenants_token_and_a_colleagues_token_are_404(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    colleague = make_actor(Role.ADMIN, tenant=member.tenant)
    stranger = make_actor(Role.OWNER)
    client = browser(member)

    for token in (colleague.token, stranger.token):
        assert client.get(page_url("token_revoke", member, token_id=token.pk)).status_code == 404
        assert client.post(page_url("token_revoke", member, token_id=token.pk)).status_code == 404
        token.refresh_from_db()
        assert token.revoked_at is None


def test_an_admin_revokes_a_members_token(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(page_url("token_revoke", admin, token_id=member.token.pk))
    assert response.status_code == 302
    member.token.refresh_from_db()
    assert member.token.revoked_at is not None


def test_a_suspended_tenant_creates_no_token_but_still_revokes(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    owner.tenant.status, owner.tenant.status_reason = TenantStatus.SUSPENDED, "unpaid invoice"
    owner.tenant.save(update_fields=["status", "status_reason"])
    client = browser(owner)

    refused = client.post(page_url("tokens", owner), {"name": "ci", "scopes": ["instances:read"]})
    assert refused.status_code == 403
    assert "suspended" in html(refused) and "unpaid invoice" in html(refused)
    assert not ApiToken.objects.filter(name="ci").exists()

    assert client.post(page_url("token_revoke", owner, token_id=owner.token.pk)).status_code == 302
