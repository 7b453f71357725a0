"""List endpoints run a fixed number of queries, however many rows they return (no N+1).

Each case adds rows that differ in every related object the serializer shows (another user, another
inviter, another actor), measures the request at 2 rows and again at 25, and wants the same count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.services import audit_record
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.core import routes
from tests.factories import MembershipFactory, TenantFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db


def _tenants(actor: Actor, n: int) -> None:
    for _ in range(n):
        MembershipFactory(user=actor.user, tenant=TenantFactory(), role=Role.MEMBER)


def _members(actor: Actor, n: int) -> None:
    for _ in range(n):
        MembershipFactory(tenant=actor.tenant, role=Role.VIEWER)


def _invitations(actor: Actor, n: int) -> None:
    for _ in range(n):
        inviter = MembershipFactory(tenant=actor.tenant, role=Role.ADMIN).user
        routes._invitation_id(routes.World(actor.tenant, inviter))


def _tokens(actor: Actor, n: int) -> None:
    for _ in range(n):
        user = MembershipFactory(tenant=actor.tenant, role=Role.MEMBER).user
        make_token(user=user, tenant=actor.tenant, name="listed")


def _audit_events(actor: Actor, n: int) -> None:
    for i in range(n):
        audit_record(actor=UserFactory(), action="test.event", tenant=actor.tenant, changes={"i": i})


def _ssh_keys(actor: Actor, n: int) -> None:
    for _ in range(n):
        routes._ssh_key_id(routes.World(actor.tenant, UserFactory()))


def _instances(actor: Actor, n: int) -> None:
    for _ in range(n):
        routes._instance_id(routes.World(actor.tenant, UserFactory()))


def _clusters(actor: Actor, n: int) -> None:
    for _ in range(n):
        routes._cluster_id(routes.World(actor.tenant, UserFactory()))


def _quota_requests(actor: Actor, n: int) -> None:
    for _ in range(n):
        routes._quota_request_id(routes.World(actor.tenant, UserFactory()))


LISTS: list[tuple[str, Callable[[Actor, int], None], str]] = [
    ("/api/v1/tenants", _tenants, "session"),
    ("{tenant}/members", _members, "token"),
    ("{tenant}/invitations", _invitations, "token"),
    ("{tenant}/tokens", _tokens, "token"),
    ("{tenant}/tokens", _tokens, "session"),
    ("{tenant}/audit-events", _audit_events, "token"),
    ("{tenant}/ssh-keys", _ssh_keys, "token"),
    ("{tenant}/instances", _instances, "token"),
    ("{tenant}/clusters", _clusters, "token"),
    ("{tenant}/quota-requests", _quota_requests, "token"),
]


def _count_queries(client: Any, url: str) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content[:300]
    return len(queries), response.json()


@pytest.mark.parametrize(("path", "add_rows", "auth"), LISTS, ids=[f"{p} ({a})" for p, _, a in LISTS])
def test_list_queries_do_not_grow_with_rows(
    path: str, add_rows: Callable[[Actor, int], None], auth: str, owner: Actor
) -> None:
    url = path.replace("{tenant}", owner.url())
    client = owner.session_client() if auth == "session" else owner.token_client()
    add_rows(owner, 2)
    client.get(url)  # warm up: the token's last_used_at, the session

    few, few_body = _count_queries(client, url)
    add_rows(owner, 23)
    many, many_body = _count_queries(client, url)

    assert many_body["count"] >= few_body["count"] + 23  # the rows really are listed
    assert len(many_body["results"]) >= 25
    assert many == few, f"{url}: {few} queries for {few_body['count']} rows, {many} for {many_body['count']}"
