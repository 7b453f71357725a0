"""Every mutation of accounts and tenants writes one audit event: who, where, from which request, what.

Each test performs one mutation through the path people use (API, console page or admin) with an
X-Request-ID header, then checks the single event it wrote.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.accounts.services import email_verification_token
from apps.audit.models import AuditEvent
from apps.tenants import services as tenant_services
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Role
from tests.conftest import Actor, login_staff
from tests.factories import UserFactory, make_token
from tests.tenants.support import make_invitation

REQUEST_ID = "req-audit-0123456789"
H = {"HTTP_X_REQUEST_ID": REQUEST_ID}

ACTIONS = [
    "tenant.create",
    "tenant.update",
    "tenant.suspend",
    "tenant.reactivate",
    "tenant.close",
    "member.add",
    "member.change_role",
    "member.remove",
    "member.leave",
    "invitation.create",
    "invitation.revoke",
    "invitation.accept",
    "token.create",
    "token.revoke",
    "user.signup",
    "user.verify_email",
]


def the_event(
    action: str, *, actor: User | None, tenant: Tenant | None, via: str = "api", token: Any = None
) -> AuditEvent:
    """The single event of `action`, with the request's id and IP and the expected actor."""
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, [str(e) for e in events]
    event = events[0]
    assert event.actor_user == actor
    assert event.actor_label == (actor.email if actor else f"system:{via}")
    assert event.tenant == tenant
    assert event.via == via
    assert event.request_id == REQUEST_ID
    assert event.ip == "127.0.0.1"
    assert event.actor_token_id == (token.pk if token is not None else None)
    assert event.created_at is not None
    return event


def _session(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# Tenants


def test_tenant_create_and_owner_membership(db: Any) -> None:
    user = UserFactory()

    response = _session(user).post("/api/v1/tenants", {"name": "Acme", "slug": "acme"}, **H)

    tenant = Tenant.objects.get(pk=response.json()["id"])
    event = the_event("tenant.create", actor=user, tenant=tenant)
    assert (event.target_type, event.target_id) == ("tenants.tenant", str(tenant.pk))
    assert event.changes == {"name": "Acme", "slug": "acme"}
    added = the_event("member.add", actor=user, tenant=tenant)
    assert added.changes == {"user": user.email, "role": "owner"}


def test_tenant_update(owner: Actor) -> None:
    old = owner.tenant.name

    owner.token_client().patch(owner.url(), {"name": "Renamed"}, format="json", **H)

    event = the_event("tenant.update", actor=owner.user, tenant=owner.tenant, token=owner.token)
    assert event.changes == {"name": {"from": old, "to": "Renamed"}}


def test_tenant_update_without_a_change_writes_nothing(owner: Actor) -> None:
    owner.token_client().patch(owner.url(), {"name": owner.tenant.name}, format="json", **H)

    assert not AuditEvent.objects.filter(action="tenant.update").exists()


@pytest.fixture
def staff_client(db: Any) -> tuple[Client, User]:
    staff = User.objects.create_superuser(email="staff@example.com", password="x-staff-password-1")
    return login_staff(Client(**H), staff), staff


def _admin_action(client: Client, action: str, tenant: Tenant, **extra: str) -> None:
    response = client.post(
        "/admin/tenants/tenant/", {"action": action, "_selected_action": [str(tenant.pk)], **extra}
    )
    assert response.status_code == 302


def test_tenant_suspend_reactivate_close(staff_client: tuple[Client, User], owner: Actor) -> None:
    client, staff = staff_client

    _admin_action(client, "suspend", owner.tenant, apply="1", reason="Card declined")
    _admin_action(client, "reactivate", owner.tenant)
    _admin_action(client, "close", owner.tenant, apply="1", reason="Asked to")

    suspend = the_event("tenant.suspend", actor=staff, tenant=owner.tenant, via="admin")
    assert suspend.changes["status"] == {"from": "active", "to": "suspended"}
    reactivate = the_event("tenant.reactivate", actor=staff, tenant=owner.tenant, via="admin")
    assert reactivate.changes["status"] == {"from": "suspended", "to": "active"}
    close = the_event("tenant.close", actor=staff, tenant=owner.tenant, via="admin")
    assert close.changes == {
        "status": {"from": "active", "to": "closed"},
        "status_reason": {"from": "", "to": "Asked to"},
    }


# Members


def test_member_change_role(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)

    owner.token_client().patch(owner.url(f"/members/{member.membership.pk}"), {"role": "admin"}, **H)

    event = the_event("member.change_role", actor=owner.user, tenant=owner.tenant, token=owner.token)
    assert (event.target_type, event.target_id) == ("tenants.membership", str(member.membership.pk))
    assert event.changes == {"role": {"from": "member", "to": "admin"}}
    assert event.metadata == {"user": member.user.email}


def test_member_remove(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.BILLING, tenant=owner.tenant)

    owner.session_client().delete(owner.url(f"/members/{member.membership.pk}"), **H)

    event = the_event("member.remove", actor=owner.user, tenant=owner.tenant)
    assert event.target_id == str(member.membership.pk)
    assert event.metadata == {"user": member.user.email, "role": "billing"}


def test_member_leave(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)

    viewer.session_client().delete(viewer.url(f"/members/{viewer.membership.pk}"), **H)

    event = the_event("member.leave", actor=viewer.user, tenant=owner.tenant)
    assert event.metadata == {"user": viewer.user.email, "role": "viewer"}


# Invitations


def test_invitation_create(owner: Actor) -> None:
    response = owner.token_client().post(
        owner.url("/invitations"), {"email": "ada@example.com", "role": "viewer"}, format="json", **H
    )

    event = the_event("invitation.create", actor=owner.user, tenant=owner.tenant, token=owner.token)
    assert (event.target_type, event.target_id) == ("tenants.invitation", response.json()["id"])
    assert event.changes == {"email": "ada@example.com", "role": "viewer"}


def test_invitation_revoke(owner: Actor) -> None:
    invitation, _ = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")

    owner.session_client().delete(owner.url(f"/invitations/{invitation.pk}"), **H)

    event = the_event("invitation.revoke", actor=owner.user, tenant=owner.tenant)
    assert event.target_id == str(invitation.pk)
    assert event.metadata == {"email": "ada@example.com"}


def test_invitation_accept_and_member_add(owner: Actor) -> None:
    invitation, secret = make_invitation(
        tenant=owner.tenant, invited_by=owner.user, email="ada@example.com", role=Role.ADMIN
    )
    ada = UserFactory(email="ada@example.com")

    _session(ada).post("/api/v1/invitations/accept", {"token": secret}, format="json", **H)

    accept = the_event("invitation.accept", actor=ada, tenant=owner.tenant)
    assert accept.target_id == str(invitation.pk)
    assert accept.metadata == {"email": "ada@example.com", "role": "admin"}
    added = the_event("member.add", actor=ada, tenant=owner.tenant)
    assert added.target_id == str(Membership.objects.get(user=ada).pk)
    assert added.changes == {"user": "ada@example.com", "role": "admin"}


# Tokens


def test_token_create(owner: Actor) -> None:
    response = owner.token_client().post(
        owner.url("/tokens"), {"name": "ci", "scopes": ["instances:read"]}, format="json", **H
    )

    event = the_event("token.create", actor=owner.user, tenant=owner.tenant, token=owner.token)
    assert (event.target_type, event.target_id) == ("accounts.apitoken", response.json()["id"])
    # Made with a token: the token it was made with is its parent (revoking that one revokes this one).
    assert event.changes == {
        "name": "ci",
        "scopes": ["instances:read"],
        "expires_at": None,
        "parent": owner.token.prefix,
    }


def test_token_revoke(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    token, _ = make_token(user=member.user, tenant=owner.tenant, name="laptop")

    owner.session_client().delete(owner.url(f"/tokens/{token.pk}"), **H)

    event = the_event("token.revoke", actor=owner.user, tenant=owner.tenant)
    assert event.target_id == str(token.pk)
    assert event.metadata == {
        "name": "laptop",
        "prefix": token.prefix,
        "owner": member.user.email,
        "descendants_revoked": 0,
    }


# Users


@pytest.mark.django_db
def test_user_signup_and_verify_email(django_capture_on_commit_callbacks: Any) -> None:
    client = Client(**H)
    form = {"email": "New.Person@Example.com", "full_name": "New Person", "password": "a-long-pass-phrase-9"}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/signup/", form)

    assert response.status_code == 302
    user = User.objects.get(email="new.person@example.com")
    signup = the_event("user.signup", actor=user, tenant=None, via="console")
    assert (signup.target_type, signup.target_id) == ("accounts.user", str(user.pk))
    assert len(mail.outbox) == 1

    response = client.get("/accounts/verify-email/", {"token": email_verification_token(user)})

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email_verified
    the_event("user.verify_email", actor=user, tenant=None, via="console")
    client.get("/accounts/verify-email/", {"token": email_verification_token(user)})
    assert AuditEvent.objects.filter(action="user.verify_email").count() == 1  # verifying twice is a no-op


def test_a_refused_request_writes_no_event(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    before = AuditEvent.objects.count()

    viewer.session_client().patch(viewer.url(), {"name": "x"}, **H)
    viewer.session_client().delete(viewer.url(f"/members/{owner.membership.pk}"), **H)
    owner.session_client().patch(owner.url(f"/members/{owner.membership.pk}"), {"role": "viewer"}, **H)

    assert AuditEvent.objects.count() == before


def test_system_actions_are_labelled_as_such(owner: Actor) -> None:
    tenant_services.tenant_suspend(actor=None, tenant=owner.tenant, reason="Automated fraud check")

    event = AuditEvent.objects.get(action="tenant.suspend")
    assert event.actor_user is None
    assert event.actor_label == "system:system"
    assert event.request_id == ""


def test_every_action_is_checked_by_a_test_above() -> None:
    source = Path(__file__).read_text()
    assert [action for action in ACTIONS if f'the_event("{action}"' not in source] == []
