"""Members and invitations: roles, removing and leaving, inviting, revoking invitations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.tenants import services as tenant_services
from apps.tenants.models import Invitation, Membership
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.console.account.helpers import MakeActor, browser, has_csrf, html, page_url

pytestmark = pytest.mark.django_db


def test_members_page_lists_members_with_role_controls_for_admins(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    owner = make_actor(Role.OWNER, tenant=admin.tenant)

    response = browser(admin).get(page_url("members", admin))

    page = html(response)
    assert response.status_code == 200
    for actor in (admin, member, owner):
        assert actor.user.email in page
    # An admin changes members (not owners) and grants any role but owner.
    assert page_url("member_role", admin, member_id=member.membership.pk) in page
    assert page_url("member_role", admin, member_id=owner.membership.pk) not in page
    assert f'<label for="role-{member.membership.pk}"' in page
    assert '<option value="owner"' not in page
    assert page_url("member_remove", admin, member_id=member.membership.pk) in page
    assert 'action="' + page_url("invite", admin) + '"' in page


def test_a_viewer_sees_members_but_no_controls_and_no_invitations(make_actor: MakeActor) -> None:
    viewer = make_actor(Role.VIEWER)
    other = make_actor(Role.MEMBER, tenant=viewer.tenant)
    Invitation.objects.create(
        tenant=viewer.tenant,
        email="pending@example.com",
        role=Role.MEMBER,
        secret_hash="x" * 64,
        invited_by=other.user,
        expires_at=timezone.now() + timedelta(days=1),
    )

    page = html(browser(viewer).get(page_url("members", viewer)))

    assert other.user.email in page
    assert "<select" not in page
    assert "pending@example.com" not in page
    assert page_url("member_remove", viewer, member_id=other.membership.pk) not in page
    assert page_url("member_remove", viewer, member_id=viewer.membership.pk) in page  # leave


def test_changing_a_role_saves_it(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)

    response = browser(admin).post(
        page_url("member_role", admin, member_id=member.membership.pk), {"role": "viewer"}
    )

    assert response.status_code == 302
    member.membership.refresh_from_db()
    assert member.membership.role == Role.VIEWER
    assert AuditEvent.objects.filter(
        action="member.change_role", target_id=str(member.membership.pk)
    ).exists()


def test_the_last_owner_cannot_be_demoted_and_the_page_says_why(owner: Actor) -> None:
    response = browser(owner).post(
        page_url("member_role", owner, member_id=owner.membership.pk), {"role": "admin"}
    )
    assert response.status_code == 409
    assert "The last owner cannot be demoted" in html(response)
    owner.membership.refresh_from_db()
    assert owner.membership.role == Role.OWNER


def test_an_admin_cannot_make_an_owner_and_the_page_says_why(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(
        page_url("member_role", admin, member_id=member.membership.pk), {"role": "owner"}
    )
    assert response.status_code == 403
    assert "cannot change an &#x27;member&#x27; into &#x27;owner&#x27;" in html(response)
    member.membership.refresh_from_db()
    assert member.membership.role == Role.MEMBER


def test_an_unknown_role_is_a_field_error(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(
        page_url("member_role", admin, member_id=member.membership.pk), {"role": "emperor"}
    )
    assert response.status_code == 400
    assert "is not a valid choice" in html(response)


def test_a_member_may_not_change_roles(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    other = make_actor(Role.VIEWER, tenant=member.tenant)
    response = browser(member).post(
        page_url("member_role", member, member_id=other.membership.pk), {"role": "admin"}
    )
    assert response.status_code == 403
    assert "members.manage" in html(response)
    other.membership.refresh_from_db()
    assert other.membership.role == Role.VIEWER


def test_another_tenants_member_is_404(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    stranger = make_actor(Role.MEMBER)
    client = browser(admin)
    assert (
        client.post(
            page_url("member_role", admin, member_id=stranger.membership.pk), {"role": "viewer"}
        ).status_code
        == 404
    )
    assert client.get(page_url("member_remove", admin, member_id=stranger.membership.pk)).status_code == 404
    assert client.post(page_url("member_remove", admin, member_id=stranger.membership.pk)).status_code == 404
    assert Membership.objects.filter(pk=stranger.membership.pk).exists()


def test_removing_a_member_asks_first_then_removes(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    client = browser(admin)
    url = page_url("member_remove", admin, member_id=member.membership.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert f"Remove {member.user.email}?" in html(confirm)
    assert has_csrf(confirm)

    response = client.post(url)

    assert response.status_code == 302
    assert not Membership.objects.filter(pk=member.membership.pk).exists()
    member.token.refresh_from_db()
    assert member.token.revoked_at is not None


def test_a_viewer_cannot_remove_others_but_may_leave(make_actor: MakeActor) -> None:
    viewer = make_actor(Role.VIEWER)
    other = make_actor(Role.MEMBER, tenant=viewer.tenant)
    client = browser(viewer)

    assert client.get(page_url("member_remove", viewer, member_id=other.membership.pk)).status_code == 403
    assert client.post(page_url("member_remove", viewer, member_id=other.membership.pk)).status_code == 403
    assert Membership.objects.filter(pk=other.membership.pk).exists()

    leave = client.post(page_url("member_remove", viewer, member_id=viewer.membership.pk))
    assert leave.status_code == 302
    assert leave.url == reverse("console:home")
    assert not Membership.objects.filter(pk=viewer.membership.pk).exists()


def test_the_last_owner_cannot_leave(owner: Actor) -> None:
    response = browser(owner).post(page_url("member_remove", owner, member_id=owner.membership.pk))
    assert response.status_code == 409
    assert "The last owner cannot leave" in html(response)
    assert Membership.objects.filter(pk=owner.membership.pk).exists()


def test_inviting_by_email_lists_the_invitation_as_pending(
    make_actor: MakeActor, django_capture_on_commit_callbacks: Any
) -> None:
    admin = make_actor(Role.ADMIN)
    client = browser(admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page_url("invite", admin), {"email": "Ada@Example.com", "role": "billing"})

    assert response.status_code == 302
    invitation = Invitation.objects.get(tenant=admin.tenant)
    assert (invitation.email, invitation.role, invitation.state) == ("ada@example.com", "billing", "pending")
    page = html(client.get(page_url("members", admin)))
    assert "ada@example.com" in page
    assert page_url("invitation_revoke", admin, invitation_id=invitation.pk) in page


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"email": "not-an-email", "role": "member"}, 400, "Enter a valid email address."),
        ({"email": "", "role": "member"}, 400, "This field may not be blank."),
        ({"email": "ada@example.com", "role": "emperor"}, 400, "is not a valid choice"),
        ({"email": "ada@example.com", "role": "owner"}, 403, "cannot invite an &#x27;owner&#x27;"),
    ],
)
def test_invitation_form_errors(
    make_actor: MakeActor, form: dict[str, str], status: int, message: str
) -> None:
    admin = make_actor(Role.ADMIN)
    response = browser(admin).post(page_url("invite", admin), form)
    assert response.status_code == status
    assert message in html(response)
    assert not Invitation.objects.filter(tenant=admin.tenant).exists()


def test_inviting_an_existing_member_says_so(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    member = make_actor(Role.MEMBER, tenant=admin.tenant)
    response = browser(admin).post(page_url("invite", admin), {"email": member.user.email, "role": "viewer"})
    assert response.status_code == 409
    assert "Already a member of this tenant." in html(response)


def test_a_member_may_not_invite(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    response = browser(member).post(page_url("invite", member), {"email": "x@example.com", "role": "viewer"})
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_revoking_an_invitation_asks_first_and_another_tenants_is_404(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    stranger = make_actor(Role.OWNER)
    mine, _ = tenant_services.invitation_create(
        actor=admin.user,
        actor_role=admin.membership.role,
        tenant=admin.tenant,
        email="a@example.com",
        role="viewer",
    )
    theirs, _ = tenant_services.invitation_create(
        actor=stranger.user, actor_role="owner", tenant=stranger.tenant, email="b@example.com", role="viewer"
    )
    client = browser(admin)
    url = page_url("invitation_revoke", admin, invitation_id=mine.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200 and "a@example.com" in html(confirm) and has_csrf(confirm)
    assert client.post(url).status_code == 302
    mine.refresh_from_db()
    assert mine.state == "revoked"
    pending = html(client.get(page_url("members", admin)))
    assert page_url("invitation_revoke", admin, invitation_id=mine.pk) not in pending  # no longer pending
    again = client.post(url)
    assert again.status_code == 409 and "already revoked" in html(again)

    assert client.post(page_url("invitation_revoke", admin, invitation_id=theirs.pk)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.state == "pending"
