"""Bearer token authentication: what is refused with 401, 403 and 404, and what a token may reach."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.tenants.authentication import LAST_USED_RESOLUTION
from apps.tenants.models import Membership
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import make_token
from tests.tenants.support import assert_error


def _bearer(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def test_a_valid_token_authenticates(owner: Actor) -> None:
    assert owner.token_client().get(owner.url()).status_code == 200


def test_expired_token_is_401(owner: Actor) -> None:
    _token, plaintext = make_token(
        user=owner.user, tenant=owner.tenant, expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = owner.token_client(plaintext).get(owner.url())

    assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401(owner: Actor) -> None:
    ApiToken.objects.filter(pk=owner.token.pk).update(revoked_at=timezone.now())

    assert_error(owner.token_client().get(owner.url()), 401, "authentication_failed")


def test_token_of_a_deactivated_user_is_401(owner: Actor) -> None:
    owner.user.is_active = False
    owner.user.save(update_fields=["is_active"])

    assert_error(owner.token_client().get(owner.url()), 401)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer a b",
        "Bearer not-a-token",
        "Bearer gpc_short_x",
        "Bearer gpc_abcdefghij_" + "A" * 40,  # well formed, unknown prefix
    ],
)
def test_malformed_or_unknown_token_is_401(owner: Actor, header: str) -> None:
    assert_error(_bearer(header).get(owner.url()), 401)


def test_right_prefix_wrong_secret_is_401(owner: Actor) -> None:
    prefix = owner.token.prefix
    forged = f"gpc_{prefix}_" + "B" * 40

    assert_error(owner.token_client(forged).get(owner.url()), 401, "authentication_failed")


def test_missing_credentials_is_401(owner: Actor) -> None:
    assert_error(APIClient().get(owner.url()), 401, "not_authenticated")


def test_missing_scope_is_403_naming_the_scope(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER, token_scopes=("instances:read",))

    response = actor.token_client().get(actor.url("/members"))

    error = assert_error(response, 403, "missing_scope")
    assert "tenant:read" in error["message"]


def test_read_scope_does_not_allow_writes(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER, token_scopes=("tenant:read",))

    response = actor.token_client().patch(actor.url(), {"name": "x"}, format="json")

    error = assert_error(response, 403, "missing_scope")
    assert "tenant:admin" in error["message"]
    actor.tenant.refresh_from_db()
    assert actor.tenant.name != "x"


def test_write_scope_implies_read(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER, token_scopes=("tenant:admin",))

    assert actor.token_client().get(actor.url("/members")).status_code == 200


def test_a_scope_never_exceeds_the_role(make_actor: Callable[..., Actor]) -> None:
    # A viewer's token saved with tenant:admin still cannot do what the viewer's role cannot.
    viewer = make_actor(Role.VIEWER, token_scopes=("tenant:admin",))

    assert_error(viewer.token_client().patch(viewer.url(), {"name": "x"}), 403, "role_forbidden")


def test_a_token_on_another_tenants_url_is_404(make_actor: Callable[..., Actor]) -> None:
    a = make_actor(Role.OWNER)
    b = make_actor(Role.OWNER)

    assert_error(a.token_client().get(b.url()), 404, "not_found")
    assert_error(a.token_client().get(b.url("/members")), 404, "not_found")


def test_a_token_is_404_on_another_tenant_even_when_its_user_belongs_there(
    make_actor: Callable[..., Actor],
) -> None:
    a = make_actor(Role.OWNER)
    b = make_actor(Role.OWNER)
    b.tenant.memberships.create(user=a.user, role=Role.OWNER)

    assert_error(a.token_client().get(b.url()), 404, "not_found")
    assert a.session_client().get(b.url()).status_code == 200  # the session may: it is not tenant-bound


def test_last_used_at_is_recorded(owner: Actor) -> None:
    assert owner.token.last_used_at is None

    owner.token_client().get(owner.url())

    owner.token.refresh_from_db()
    assert owner.token.last_used_at is not None


def test_last_used_at_is_refreshed_once_stale(owner: Actor) -> None:
    stale = timezone.now() - LAST_USED_RESOLUTION - timedelta(minutes=5)
    ApiToken.objects.filter(pk=owner.token.pk).update(last_used_at=stale)

    owner.token_client().get(owner.url())

    owner.token.refresh_from_db()
    assert owner.token.last_used_at is not None and owner.token.last_used_at > stale


def test_a_token_reads_its_membership_in_the_same_query(owner: Actor) -> None:
    client = owner.token_client()
    client.get(owner.url())  # last_used_at is written on first use; count a steady request

    with CaptureQueriesContext(connection) as ctx:
        assert client.get(owner.url()).status_code == 200

    assert [q["sql"].split(" ", 2)[1] for q in ctx.captured_queries] == ['"accounts_apitoken"."id",']


def test_a_role_change_reaches_the_next_token_request(make_actor: Callable[..., Actor]) -> None:
    admin = make_actor(Role.ADMIN)
    client = admin.token_client()
    assert client.get(admin.url("/members")).status_code == 200

    Membership.objects.filter(pk=admin.membership.pk).update(role=Role.VIEWER)

    assert_error(client.patch(admin.url(), {"name": "renamed"}), 403, "role_forbidden")


def test_a_token_of_a_user_who_left_the_tenant_is_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    client = member.token_client()
    assert client.get(member.url()).status_code == 200

    Membership.objects.filter(pk=member.membership.pk).delete()

    assert_error(client.get(member.url()), 404, "not_found")
