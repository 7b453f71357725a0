"""Console pages: the tenant list, creating a tenant, and accepting an invitation from its email."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.tenants import services as tenant_services
from apps.tenants.models import Membership, Tenant, TenantStatus
from apps.tenants.roles import Role
from tests.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def _logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- home ----------------------------------------------------------------------------------------------


def test_home_needs_a_session(client: Client) -> None:
    response = client.get(reverse("console:home"))
    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next=/"


def test_home_lists_the_users_memberships_and_nobody_elses() -> None:
    user = UserFactory()
    MembershipFactory(user=user, tenant=TenantFactory(name="Acme Research", slug="acme"), role=Role.ADMIN)
    MembershipFactory(
        user=user,
        tenant=TenantFactory(name="Beta Labs", slug="beta", status=TenantStatus.SUSPENDED),
        role=Role.VIEWER,
    )
    MembershipFactory(tenant=TenantFactory(name="Hidden Corp", slug="hidden"))

    response = _logged_in(user).get(reverse("console:home"))

    assert response.status_code == 200
    rows = [(m.tenant.slug, m.role) for m in response.context["memberships"]]
    assert rows == [("acme", "admin"), ("beta", "viewer")]
    html = response.content.decode()
    assert "Acme Research" in html
    assert "suspended" in html
    assert "Hidden Corp" not in html


def test_home_of_a_new_user_says_so_and_asks_to_verify() -> None:
    response = _logged_in(UserFactory(email_verified_at=None)).get(reverse("console:home"))
    html = response.content.decode()
    assert "You belong to no tenant yet." in html
    assert "Verify your email address" in html


# --- create a tenant -----------------------------------------------------------------------------------


def test_a_verified_user_creates_a_tenant_and_owns_it() -> None:
    user = UserFactory()
    client = _logged_in(user)
    assert client.get(reverse("console:tenant_new")).status_code == 200

    response = client.post(reverse("console:tenant_new"), {"name": "  Acme Research  "})

    assert response.status_code == 302
    assert response.url == reverse("console:home")
    tenant = Tenant.objects.get(name="Acme Research")
    assert tenant.slug == "acme-research"
    assert Membership.objects.get(tenant=tenant, user=user).role == Role.OWNER
    event = AuditEvent.objects.get(action="tenant.create", tenant=tenant)
    assert event.actor_user == user
    assert event.via == "console"
    assert "Acme Research" in client.get(reverse("console:home")).content.decode()


def test_an_unverified_user_gets_an_error_and_no_tenant() -> None:
    client = _logged_in(UserFactory(email_verified_at=None))

    response = client.post(reverse("console:tenant_new"), {"name": "Acme"})

    assert response.status_code == 403
    assert "Verify your email address" in response.content.decode()
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_a_bad_name_is_refused_on_the_field_as_the_api_refuses_it(name: str) -> None:
    """The form validates with the API's TenantCreateSerializer: the same messages as POST /api/v1/tenants,
    shown on the name field (aria-invalid, described by the message)."""
    user = UserFactory()
    api = APIClient()
    api.force_authenticate(user)
    refused = api.post("/api/v1/tenants", {"name": name}, format="json")
    assert refused.status_code == 400
    api_message = refused.json()["error"]["fields"]["name"][0]

    response = _logged_in(user).post(reverse("console:tenant_new"), {"name": name})

    assert response.status_code == 400
    assert response.context["field_errors"]["name"] == [api_message]
    html = response.content.decode()
    assert f'<span class="errorlist" id="tenant-name-error">{escape(api_message)}</span>' in html
    assert 'aria-describedby="tenant-name-help tenant-name-error" aria-invalid="true"' in html
    assert 'role="alert"' in html
    assert f'value="{name}"' in html  # what was typed is kept
    assert not Tenant.objects.exists()


def test_the_new_tenant_form_marks_no_field_before_it_is_sent() -> None:
    html = _logged_in(UserFactory()).get(reverse("console:tenant_new")).content.decode()
    assert 'aria-describedby="tenant-name-help"' in html
    assert "aria-invalid" not in html and 'role="alert"' not in html


def test_create_tenant_needs_a_session_and_csrf() -> None:
    anonymous = Client()
    response = anonymous.post(reverse("console:tenant_new"), {"name": "Acme"})
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory())
    assert strict.post(reverse("console:tenant_new"), {"name": "Acme"}).status_code == 403
    assert not Tenant.objects.exists()


# --- accept an invitation ------------------------------------------------------------------------------


def _invite(
    email: str, capture: Any, role: str = Role.MEMBER, tenant: Tenant | None = None
) -> tuple[Tenant, str]:
    """An owner invites `email`; returns the tenant and the accept-page path from the email."""
    from django.core import mail

    tenant = tenant or TenantFactory(name="Acme Research", slug="acme")
    owner = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    with capture(execute=True):
        tenant_services.invitation_create(
            actor=owner, actor_role=Role.OWNER, tenant=tenant, email=email, role=role
        )
    message = mail.outbox[-1]
    assert message.to == [email]
    match = re.search(r"https?://[^/\s]+(/\S+)", message.body)
    assert match, message.body
    return tenant, match.group(1)


def test_the_emailed_invitation_link_joins_the_tenant(
    mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    tenant, link = _invite("ada@example.com", django_capture_on_commit_callbacks, role=Role.BILLING)
    assert link.startswith(reverse("console:invitation_accept") + "?token=")
    ada = UserFactory(email="ada@example.com")
    client = _logged_in(ada)

    page = client.get(link)
    assert page.status_code == 200
    assert 'name="token"' in page.content.decode()

    response = client.post(reverse("console:invitation_accept"), {"token": page.context["token"]})

    assert response.status_code == 302
    assert response.url == reverse("console:home")
    assert Membership.objects.get(tenant=tenant, user=ada).role == Role.BILLING
    assert AuditEvent.objects.filter(action="invitation.accept", tenant=tenant, actor_user=ada).exists()
    assert AuditEvent.objects.filter(action="member.add", tenant=tenant, actor_user=ada).exists()
    home = client.get(reverse("console:home"))
    assert [(m.tenant.slug, m.role) for m in home.context["memberships"]] == [("acme", "billing")]

    # Single use: the same link now answers a conflict.
    again = client.post(reverse("console:invitation_accept"), {"token": page.context["token"]})
    assert again.status_code == 409
    assert "accepted" in again.content.decode()


def test_an_invitation_link_sends_a_stranger_to_log_in_and_back(
    mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    _tenant, link = _invite("ada@example.com", django_capture_on_commit_callbacks)
    response = Client().get(link)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")
    login_page = Client().get(response.url)
    # The sign-up link keeps the way back to the invitation.
    assert "/accounts/signup/?next=" in login_page.content.decode()


def test_someone_else_cannot_use_the_invitation(
    mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    tenant, link = _invite("ada@example.com", django_capture_on_commit_callbacks)
    token = link.split("token=", 1)[1]
    eve = _logged_in(UserFactory(email="eve@example.com"))

    response = eve.post(reverse("console:invitation_accept"), {"token": token})

    assert response.status_code == 404
    assert not Membership.objects.filter(tenant=tenant, user__email="eve@example.com").exists()


def test_an_unverified_invitee_is_told_to_verify_first(
    mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    tenant, link = _invite("ada@example.com", django_capture_on_commit_callbacks)
    token = link.split("token=", 1)[1]
    client = _logged_in(UserFactory(email="ada@example.com", email_verified_at=None))

    response = client.post(reverse("console:invitation_accept"), {"token": token})

    assert response.status_code == 403
    assert "Verify your email address" in response.content.decode()
    assert not Membership.objects.filter(tenant=tenant, user__email="ada@example.com").exists()


def test_a_wrong_token_is_not_found() -> None:
    client = _logged_in(UserFactory())
    response = client.post(reverse("console:invitation_accept"), {"token": "not-a-real-token"})
    assert response.status_code == 404
    assert "does not exist" in response.content.decode()


def test_the_page_without_a_token_explains_itself() -> None:
    response = _logged_in(UserFactory()).get(reverse("console:invitation_accept"))
    assert response.status_code == 200
    assert "Open the link from your invitation email" in response.content.decode()
