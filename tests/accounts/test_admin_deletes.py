"""Deletes in the Django admin go through the same services as the console and the API, audited, or are not
offered: API tokens and invitations are revoked instead (their rows stay for the audit log), SSH keys are
deleted through ssh_key_delete."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import ApiToken, SshKey, User
from apps.audit.models import AuditEvent
from apps.tenants.models import Invitation
from tests.conftest import Actor, login_staff
from tests.instances.helpers import ed25519_public_key
from tests.tenants.support import assert_error, make_invitation

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser(email="staff@example.com", password="x-staff-password-1")


@pytest.fixture
def admin_client(staff: User) -> Client:
    return login_staff(Client(), staff)


def _action(client: Client, changelist: str, action: str, pks: list[Any]) -> Any:
    return client.post(
        changelist, {"action": action, "_selected_action": [str(pk) for pk in pks], "post": "yes"}
    )


def _key(owner: Actor, name: str) -> SshKey:
    return services.ssh_key_create(
        actor=owner.user, tenant=owner.tenant, name=name, public_key=ed25519_public_key()
    )


# --- API tokens ----------------------------------------------------------------------------------------


def test_api_tokens_cannot_be_deleted_in_the_admin(admin_client: Client, owner: Actor) -> None:
    changelist = "/admin/accounts/apitoken/"

    page = admin_client.get(f"{changelist}{owner.token.pk}/delete/")
    bulk = _action(admin_client, changelist, "delete_selected", [owner.token.pk])

    assert page.status_code == 403
    assert bulk.status_code in (200, 302)
    assert ApiToken.objects.filter(pk=owner.token.pk).exists()
    assert "delete_selected" not in admin_client.get(changelist).content.decode()
    assert owner.token_client().get("/api/v1/me").status_code == 200


def test_revoking_in_the_admin_is_audited_and_ends_the_token(
    admin_client: Client, staff: User, owner: Actor
) -> None:
    response = _action(admin_client, "/admin/accounts/apitoken/", "revoke", [owner.token.pk])

    assert response.status_code == 302
    assert_error(owner.token_client().get("/api/v1/me"), 401)
    event = AuditEvent.objects.get(action="token.revoke")
    assert (event.actor_user, event.tenant, event.via) == (staff, owner.tenant, "admin")


# --- SSH keys ------------------------------------------------------------------------------------------


def test_deleting_an_ssh_key_in_the_admin_is_audited(admin_client: Client, staff: User, owner: Actor) -> None:
    key = _key(owner, "laptop")

    response = admin_client.post(f"/admin/accounts/sshkey/{key.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not SshKey.objects.filter(pk=key.pk).exists()
    event = AuditEvent.objects.get(action="ssh_key.delete")
    assert (event.actor_user, event.tenant, event.target_id, event.via) == (
        staff,
        owner.tenant,
        str(key.pk),
        "admin",
    )
    assert event.metadata["fingerprint"] == key.fingerprint
    assert owner.token_client().get(owner.url(f"/ssh-keys/{key.pk}")).status_code == 404


def test_bulk_deleting_ssh_keys_in_the_admin_audits_each(
    admin_client: Client, staff: User, owner: Actor
) -> None:
    keys = [_key(owner, "one"), _key(owner, "two")]

    response = _action(admin_client, "/admin/accounts/sshkey/", "delete_selected", [k.pk for k in keys])

    assert response.status_code == 302
    assert not SshKey.objects.filter(pk__in=[k.pk for k in keys]).exists()
    deleted = AuditEvent.objects.filter(action="ssh_key.delete", actor_user=staff)
    assert sorted(e.target_id for e in deleted) == sorted(str(k.pk) for k in keys)
    assert not AuditEvent.objects.filter(action="admin.sshkey.delete").exists()


# --- invitations ---------------------------------------------------------------------------------------


def test_invitations_are_revoked_not_deleted_in_the_admin(
    admin_client: Client, staff: User, owner: Actor
) -> None:
    invitation, _secret = make_invitation(
        tenant=owner.tenant, invited_by=owner.user, email="guest@example.com"
    )
    changelist = "/admin/tenants/invitation/"

    assert admin_client.get(f"{changelist}{invitation.pk}/delete/").status_code == 403
    _action(admin_client, changelist, "delete_selected", [invitation.pk])
    assert Invitation.objects.filter(pk=invitation.pk).exists()

    response = _action(admin_client, changelist, "revoke_invitations", [invitation.pk])

    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.state == "revoked"
    event = AuditEvent.objects.get(action="invitation.revoke")
    assert (event.actor_user, event.tenant, event.via) == (staff, owner.tenant, "admin")


def test_revoking_an_accepted_invitation_in_the_admin_says_why(admin_client: Client, owner: Actor) -> None:
    invitation, _secret = make_invitation(
        tenant=owner.tenant, invited_by=owner.user, email="in@example.com", accepted_at=timezone.now()
    )

    response = _action(admin_client, "/admin/tenants/invitation/", "revoke_invitations", [invitation.pk])

    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("already accepted" in m for m in messages), messages
    assert not AuditEvent.objects.filter(action="invitation.revoke").exists()
