"""Invitations: an emailed single-use link that expires; accepting creates the membership."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.tenants.models import Invitation, Membership
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import UserFactory
from tests.tenants.support import assert_error, database_text, make_invitation

ACCEPT = "/api/v1/invitations/accept"


def _invite(actor: Actor, capture: Any, email: str = "Ada@Example.com", role: str = "member") -> Any:
    with capture(execute=True):
        return actor.session_client().post(actor.url("/invitations"), {"email": email, "role": role})


def _secret_from_last_email() -> str:
    match = re.search(r"\?token=(\S+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def _session(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_create_emails_a_link_whose_secret_is_not_stored(
    owner: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    response = _invite(owner, django_capture_on_commit_callbacks)

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ada@example.com"
    assert body["role"] == "member"
    assert body["state"] == "pending"
    assert body["invited_by"] == owner.user.email
    assert "secret_hash" not in body and "token" not in body
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert owner.tenant.name in message.subject
    assert f"{settings.SITE_URL}/invitations/accept/?token=" in message.body
    secret = _secret_from_last_email()
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in database_text()


def test_nothing_is_emailed_when_the_transaction_does_not_commit(owner: Actor) -> None:
    # Without running on_commit callbacks the email must not go: it is sent only after the commit.
    owner.session_client().post(owner.url("/invitations"), {"email": "ada@example.com", "role": "member"})

    assert mail.outbox == []


def test_list_and_show_invitations(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    invitation, _ = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    stranger = make_actor(Role.OWNER)
    make_invitation(tenant=stranger.tenant, invited_by=stranger.user, email="bob@example.com")

    listed = owner.token_client().get(owner.url("/invitations"))
    shown = owner.token_client().get(owner.url(f"/invitations/{invitation.pk}"))

    assert [row["email"] for row in listed.json()["results"]] == ["ada@example.com"]
    assert shown.json()["id"] == str(invitation.pk)
    assert "secret_hash" not in shown.json()


def test_another_tenants_invitation_is_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.OWNER)
    theirs, _ = make_invitation(tenant=stranger.tenant, invited_by=stranger.user, email="bob@example.com")

    assert_error(owner.token_client().get(owner.url(f"/invitations/{theirs.pk}")), 404, "not_found")
    assert_error(owner.token_client().delete(owner.url(f"/invitations/{theirs.pk}")), 404, "not_found")
    theirs.refresh_from_db()
    assert theirs.state == "pending"


def test_unknown_invitation_id_is_404(owner: Actor) -> None:
    assert_error(owner.token_client().delete(owner.url(f"/invitations/{uuid.uuid4()}")), 404, "not_found")


def test_revoke(owner: Actor) -> None:
    invitation, secret = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")

    response = owner.token_client().delete(owner.url(f"/invitations/{invitation.pk}"))

    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    assert_error(owner.token_client().delete(owner.url(f"/invitations/{invitation.pk}")), 409)
    ada = UserFactory(email="ada@example.com")
    assert_error(_session(ada).post(ACCEPT, {"token": secret}), 409, "invitation_revoked")
    assert not Membership.objects.filter(user=ada).exists()


def test_admin_cannot_invite_an_owner(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)

    response = admin.session_client().post(
        admin.url("/invitations"), {"email": "a@example.com", "role": "owner"}
    )

    assert_error(response, 403, "role_forbidden")
    assert Invitation.objects.count() == 0


def test_owner_can_invite_an_owner(owner: Actor, django_capture_on_commit_callbacks: Any) -> None:
    assert _invite(owner, django_capture_on_commit_callbacks, role="owner").status_code == 201


def test_inviting_an_existing_member_is_409(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)

    response = owner.session_client().post(
        owner.url("/invitations"), {"email": member.user.email.upper(), "role": "admin"}
    )

    assert_error(response, 409, "already_member", field="email")
    assert Invitation.objects.count() == 0


def test_reinviting_revokes_the_previous_invitation(
    owner: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    first = _invite(owner, django_capture_on_commit_callbacks).json()
    first_secret = _secret_from_last_email()
    second = _invite(owner, django_capture_on_commit_callbacks, role="viewer").json()
    second_secret = _secret_from_last_email()

    assert Invitation.objects.get(pk=first["id"]).state == "revoked"
    assert Invitation.objects.get(pk=second["id"]).state == "pending"
    ada = UserFactory(email="ada@example.com")
    assert_error(_session(ada).post(ACCEPT, {"token": first_secret}), 409, "invitation_revoked")
    assert _session(ada).post(ACCEPT, {"token": second_secret}).status_code == 201
    assert Membership.objects.get(user=ada, tenant=owner.tenant).role == Role.VIEWER


def test_accept_by_the_invited_verified_user_creates_the_membership(
    owner: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    _invite(owner, django_capture_on_commit_callbacks, email="ada@example.com", role="billing")
    secret = _secret_from_last_email()
    ada = UserFactory(email="ada@example.com")

    response = _session(ada).post(ACCEPT, {"token": secret})

    assert response.status_code == 201
    assert response.json()["tenant"] == owner.tenant.slug
    assert response.json()["role"] == "billing"
    membership = Membership.objects.get(user=ada, tenant=owner.tenant)
    assert membership.role == Role.BILLING
    invitation = Invitation.objects.get(tenant=owner.tenant)
    assert invitation.state == "accepted"
    assert invitation.accepted_by == ada


def test_accept_is_single_use(owner: Actor) -> None:
    _invitation, secret = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    ada = UserFactory(email="ada@example.com")
    assert _session(ada).post(ACCEPT, {"token": secret}).status_code == 201
    Membership.objects.filter(user=ada).delete()  # even after leaving, the link does not work again

    response = _session(ada).post(ACCEPT, {"token": secret})

    assert_error(response, 409, "invitation_accepted")
    assert not Membership.objects.filter(user=ada).exists()


def test_accept_by_another_email_is_404(owner: Actor) -> None:
    _invitation, secret = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    mallory = UserFactory(email="mallory@example.com")

    response = _session(mallory).post(ACCEPT, {"token": secret})

    assert_error(response, 404, "invitation_not_found")
    assert not Membership.objects.filter(user=mallory).exists()
    assert Invitation.objects.get(tenant=owner.tenant).state == "pending"


def test_accept_with_a_wrong_secret_is_404(owner: Actor) -> None:
    make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    ada = UserFactory(email="ada@example.com")

    assert_error(_session(ada).post(ACCEPT, {"token": "not-the-secret"}), 404, "invitation_not_found")


def test_accept_an_expired_invitation_is_409(owner: Actor) -> None:
    _invitation, secret = make_invitation(
        tenant=owner.tenant,
        invited_by=owner.user,
        email="ada@example.com",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    ada = UserFactory(email="ada@example.com")

    response = _session(ada).post(ACCEPT, {"token": secret})

    assert_error(response, 409, "invitation_expired")
    assert not Membership.objects.filter(user=ada).exists()


def test_accept_needs_a_verified_email(owner: Actor) -> None:
    _invitation, secret = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    ada = UserFactory(email="ada@example.com", email_verified_at=None)

    assert_error(_session(ada).post(ACCEPT, {"token": secret}), 403, "email_unverified")
    assert not Membership.objects.filter(user=ada).exists()


@pytest.mark.django_db
def test_accept_needs_authentication() -> None:
    assert_error(APIClient().post(ACCEPT, {"token": "x"}, format="json"), 401)


def test_accept_is_audited(owner: Actor) -> None:
    _invitation, secret = make_invitation(tenant=owner.tenant, invited_by=owner.user, email="ada@example.com")
    ada = UserFactory(email="ada@example.com")

    _session(ada).post(ACCEPT, {"token": secret})

    actions = set(AuditEvent.objects.filter(actor_user=ada).values_list("action", flat=True))
    assert actions == {"invitation.accept", "member.add"}
