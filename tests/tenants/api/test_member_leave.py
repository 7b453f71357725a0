"""Leaving a tenant (DELETE on one's own membership) changes the tenant: with an API token it needs
`tenant:admin`, like removing someone else; a signed-in person may always leave (except the last owner)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.tenants.models import Membership
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


def test_a_read_only_token_cannot_remove_its_user_from_the_tenant(
    owner: Actor, make_actor: Callable[..., Actor]
) -> None:
    """The hole: member DELETE was mapped to members.read, so a `tenant:read` token could leave."""
    member = make_actor(Role.MEMBER, tenant=owner.tenant, token_scopes=("tenant:read", "instances:write"))

    response = member.token_client().delete(member.url(f"/members/{member.membership.pk}"))

    error = assert_error(response, 403, "missing_scope")
    assert "'tenant:admin'" in error["message"]
    assert Membership.objects.filter(pk=member.membership.pk).exists()
    assert not AuditEvent.objects.filter(action="member.leave").exists()
    assert member.token_client().get(member.url()).status_code == 200  # nothing revoked either


def test_a_tenant_admin_token_may_leave_even_for_a_viewer(
    owner: Actor, make_actor: Callable[..., Actor]
) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant, token_scopes=("tenant:admin",))

    response = viewer.token_client().delete(viewer.url(f"/members/{viewer.membership.pk}"))

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=viewer.membership.pk).exists()
    assert AuditEvent.objects.get(action="member.leave").actor_user == viewer.user


def test_a_session_may_leave_with_any_role(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)

    response = viewer.session_client().delete(viewer.url(f"/members/{viewer.membership.pk}"))

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=viewer.membership.pk).exists()


def test_leaving_through_the_console(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = Client()
    client.force_login(viewer.user)
    url = reverse(
        "console:member_remove", kwargs={"tenant_slug": owner.tenant.slug, "member_id": viewer.membership.pk}
    )

    assert client.get(url).status_code == 200
    response = client.post(url)

    assert response.status_code == 302
    assert not Membership.objects.filter(pk=viewer.membership.pk).exists()


def test_removing_someone_else_still_needs_members_manage(
    owner: Actor, make_actor: Callable[..., Actor]
) -> None:
    other = make_actor(Role.MEMBER, tenant=owner.tenant)
    member = make_actor(Role.MEMBER, tenant=owner.tenant)  # a full-scope token, the wrong role

    response = member.token_client().delete(member.url(f"/members/{other.membership.pk}"))

    assert_error(response, 403, "role_forbidden")
    assert Membership.objects.filter(pk=other.membership.pk).exists()
