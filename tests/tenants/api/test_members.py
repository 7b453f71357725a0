"""Members: list, change role, remove, leave; who may grant what; the last owner stays."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.core.errors import Conflict
from apps.tenants import services
from apps.tenants.models import Membership
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import MembershipFactory, TenantFactory, make_token
from tests.tenants.support import assert_error


def test_list_members_shows_only_this_tenants_members(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    colleague = make_actor(Role.VIEWER, tenant=owner.tenant)
    make_actor(Role.OWNER)  # someone in another tenant

    response = owner.token_client().get(owner.url("/members"))

    assert response.status_code == 200
    emails = {row["user"]["email"] for row in response.json()["results"]}
    assert emails == {owner.user.email, colleague.user.email}


def test_filter_members_by_role(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)

    response = owner.token_client().get(owner.url("/members?role=viewer"))

    assert [row["id"] for row in response.json()["results"]] == [str(viewer.membership.pk)]


def test_member_of_another_tenant_is_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.MEMBER)
    for method in ("get", "patch", "delete"):
        response = getattr(owner.token_client(), method)(
            owner.url(f"/members/{stranger.membership.pk}"), {"role": "viewer"}, format="json"
        )
        assert_error(response, 404, "not_found")
    stranger.membership.refresh_from_db()
    assert stranger.membership.role == Role.MEMBER


def test_unknown_member_id_is_404(owner: Actor) -> None:
    assert_error(owner.token_client().get(owner.url(f"/members/{uuid.uuid4()}")), 404, "not_found")


def test_owner_changes_a_role(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)

    response = owner.token_client().patch(owner.url(f"/members/{member.membership.pk}"), {"role": "admin"})

    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    member.membership.refresh_from_db()
    assert member.membership.role == Role.ADMIN


def test_owner_can_grant_owner(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)

    response = owner.session_client().patch(owner.url(f"/members/{admin.membership.pk}"), {"role": "owner"})

    assert response.status_code == 200
    admin.membership.refresh_from_db()
    assert admin.membership.role == Role.OWNER


def test_owner_can_demote_another_owner(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    co_owner = make_actor(Role.OWNER, tenant=owner.tenant)

    response = owner.session_client().patch(
        owner.url(f"/members/{co_owner.membership.pk}"), {"role": "member"}
    )

    assert response.status_code == 200
    co_owner.membership.refresh_from_db()
    assert co_owner.membership.role == Role.MEMBER


def test_admin_cannot_grant_owner(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)
    member = make_actor(Role.MEMBER, tenant=owner.tenant)

    response = admin.session_client().patch(admin.url(f"/members/{member.membership.pk}"), {"role": "owner"})

    assert_error(response, 403, "role_forbidden")
    member.membership.refresh_from_db()
    assert member.membership.role == Role.MEMBER


def test_admin_cannot_promote_themselves_to_owner(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)

    response = admin.session_client().patch(admin.url(f"/members/{admin.membership.pk}"), {"role": "owner"})

    assert_error(response, 403, "role_forbidden")
    admin.membership.refresh_from_db()
    assert admin.membership.role == Role.ADMIN


def test_admin_cannot_change_an_owners_role(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)

    response = admin.session_client().patch(admin.url(f"/members/{owner.membership.pk}"), {"role": "viewer"})

    assert_error(response, 403, "role_forbidden")
    owner.membership.refresh_from_db()
    assert owner.membership.role == Role.OWNER


def test_admin_cannot_remove_an_owner(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)

    response = admin.session_client().delete(admin.url(f"/members/{owner.membership.pk}"))

    assert_error(response, 403, "role_forbidden")
    assert Membership.objects.filter(pk=owner.membership.pk).exists()


def test_admin_manages_non_owner_roles(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN, tenant=owner.tenant)
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)

    response = admin.session_client().patch(
        admin.url(f"/members/{viewer.membership.pk}"), {"role": "billing"}
    )

    assert response.status_code == 200
    viewer.membership.refresh_from_db()
    assert viewer.membership.role == Role.BILLING


def test_last_owner_cannot_be_demoted(owner: Actor) -> None:
    response = owner.session_client().patch(owner.url(f"/members/{owner.membership.pk}"), {"role": "admin"})

    assert_error(response, 409, "last_owner")
    owner.membership.refresh_from_db()
    assert owner.membership.role == Role.OWNER


def test_last_owner_cannot_leave(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    make_actor(Role.ADMIN, tenant=owner.tenant)  # other members do not count; only owners do

    response = owner.session_client().delete(owner.url(f"/members/{owner.membership.pk}"))

    assert_error(response, 409, "last_owner")
    assert Membership.objects.filter(pk=owner.membership.pk).exists()
    assert not AuditEvent.objects.filter(action="member.leave").exists()


def test_an_owner_may_leave_when_another_owner_remains(
    owner: Actor, make_actor: Callable[..., Actor]
) -> None:
    co_owner = make_actor(Role.OWNER, tenant=owner.tenant)

    response = co_owner.session_client().delete(co_owner.url(f"/members/{co_owner.membership.pk}"))

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=co_owner.membership.pk).exists()


def test_a_member_may_leave(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)

    response = viewer.session_client().delete(viewer.url(f"/members/{viewer.membership.pk}"))

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=viewer.membership.pk).exists()
    event = AuditEvent.objects.get(action="member.leave")
    assert event.actor_user == viewer.user
    assert event.tenant == owner.tenant


def test_removing_a_member_revokes_their_tokens(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    elsewhere = TenantFactory()
    MembershipFactory(tenant=elsewhere, user=member.user, role=Role.MEMBER)
    token_elsewhere, _ = make_token(user=member.user, tenant=elsewhere)
    assert member.token_client().get("/api/v1/me").status_code == 200

    response = owner.session_client().delete(owner.url(f"/members/{member.membership.pk}"))

    assert response.status_code == 204
    member.token.refresh_from_db()
    assert member.token.revoked_at is not None
    assert_error(member.token_client().get("/api/v1/me"), 401)
    token_elsewhere.refresh_from_db()
    assert token_elsewhere.revoked_at is None  # only the tokens of the tenant they left
    assert AuditEvent.objects.filter(action="member.remove", actor_user=owner.user).count() == 1


@pytest.mark.django_db
def test_last_owner_demotion_is_refused_even_with_a_stale_role() -> None:
    """Two owners demote each other: the second, acting on the role it read before the first committed,
    must still be refused, because the owners are re-read under lock."""
    tenant = TenantFactory()
    a = MembershipFactory(tenant=tenant, role=Role.OWNER)
    b = MembershipFactory(tenant=tenant, role=Role.OWNER)

    services.membership_change_role(actor=a.user, actor_role=Role.OWNER, membership=b, role=Role.ADMIN)
    with pytest.raises(Conflict) as refused:
        services.membership_change_role(actor=b.user, actor_role=Role.OWNER, membership=a, role=Role.ADMIN)

    assert refused.value.code == "last_owner"
    assert Membership.objects.filter(tenant=tenant, role=Role.OWNER).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_concurrently_leave_one_owner() -> None:
    tenant = TenantFactory()
    a = MembershipFactory(tenant=tenant, role=Role.OWNER)
    b = MembershipFactory(tenant=tenant, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(actor: Membership, target: Membership) -> None:
        try:
            barrier.wait()
            services.membership_change_role(
                actor=actor.user, actor_role=Role.OWNER, membership=target, role=Role.MEMBER
            )
            outcomes.append("ok")
        except Conflict as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=demote, args=pair) for pair in ((a, b), (b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["last_owner", "ok"]
    assert Membership.objects.filter(tenant=tenant, role=Role.OWNER).count() == 1
