"""Roles and token scopes on the instance and SSH key endpoints, and constant query counts of their lists."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts import scopes
from apps.accounts import services as account_services
from apps.tenants.roles import Role
from tests.instances.helpers import ed25519_public_key, launch_body

pytestmark = pytest.mark.django_db

READ, WRITE = "read", "write"

# (method, path under the tenant, body, what it needs)
ENDPOINTS = [
    ("get", "/instances", None, READ),
    ("post", "/instances", "launch", WRITE),
    ("get", "/instances/{instance}", None, READ),
    ("patch", "/instances/{instance}", {"name": "renamed"}, WRITE),
    ("delete", "/instances/{instance}", None, WRITE),
    ("post", "/instances/{instance}/stop", None, WRITE),
    ("post", "/instances/{instance}/start", None, WRITE),
    ("post", "/instances/{instance}/restart", None, WRITE),
    ("get", "/instances/{instance}/events", None, READ),
    ("get", "/instances/{instance}/logs", None, READ),
    ("get", "/ssh-keys", None, READ),
    ("post", "/ssh-keys", "ssh_key", WRITE),
    ("get", "/ssh-keys/{ssh_key}", None, READ),
    ("delete", "/ssh-keys/{ssh_key}", None, WRITE),
]
IDS = [f"{method.upper()} {path}" for method, path, _b, _n in ENDPOINTS]

ROLE_CAN = {
    Role.OWNER: {READ, WRITE},
    Role.ADMIN: {READ, WRITE},
    Role.MEMBER: {READ, WRITE},
    Role.VIEWER: {READ},
    Role.BILLING: set(),
}


@pytest.fixture
def make_objects(tenant_owner, launch):
    """A fresh instance and SSH key of the owner's tenant: each request may delete its targets."""

    def make():
        instance_id = launch(tenant_owner).json()["id"]
        key = account_services.ssh_key_create(
            actor=tenant_owner.user,
            tenant=tenant_owner.tenant,
            name="target",
            public_key=ed25519_public_key(),
        )
        return {"instance": instance_id, "ssh_key": str(key.pk)}

    return make


@pytest.fixture
def objects(make_objects):
    return make_objects()


def call(client, actor, method, path, body, objects):
    url = actor.url(path.format(**objects))
    if body == "launch":
        body = launch_body()
    elif body == "ssh_key":
        body = {"name": "new", "public_key": ed25519_public_key()}
    return getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)


@pytest.mark.parametrize("role", list(ROLE_CAN))
@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS, ids=IDS)
def test_roles(make_actor, tenant_owner, make_objects, role, method, path, body, needs):
    actor = make_actor(role, tenant=tenant_owner.tenant)

    for client in (actor.session_client(), actor.token_client()):
        response = call(client, actor, method, path, body, make_objects())
        if needs in ROLE_CAN[role]:
            assert response.status_code not in (401, 403, 404), response.content
        else:
            assert response.status_code == 403, response.content
            assert response.json()["error"]["code"] == "role_forbidden"


@pytest.mark.parametrize(
    ("token_scopes", "can"),
    [
        ((scopes.INSTANCES_READ,), {READ}),
        ((scopes.INSTANCES_WRITE,), {READ, WRITE}),  # write implies read
        ((scopes.BILLING_READ, scopes.TENANT_ADMIN), set()),
    ],
    ids=["instances:read", "instances:write", "other scopes"],
)
@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS, ids=IDS)
def test_token_scopes(make_actor, tenant_owner, objects, token_scopes, can, method, path, body, needs):
    actor = make_actor(Role.OWNER, tenant=tenant_owner.tenant, token_scopes=token_scopes)

    response = call(actor.token_client(), actor, method, path, body, objects)

    if needs in can:
        assert response.status_code not in (401, 403, 404), response.content
    else:
        assert response.status_code == 403, response.content
        error = response.json()["error"]
        assert error["code"] == "missing_scope"
        assert f"instances:{needs}" in error["message"]


@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS, ids=IDS)
def test_unauthenticated_is_a_401(api_client, tenant_owner, objects, method, path, body, needs):
    response = call(api_client, tenant_owner, method, path, body, objects)

    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS, ids=IDS)
def test_another_tenant_is_a_404(make_actor, tenant_owner, objects, method, path, body, needs):
    stranger = make_actor(Role.OWNER)

    for client in (stranger.session_client(), stranger.token_client()):
        # The stranger's token and session on the owner's URLs.
        response = call(client, tenant_owner, method, path, body, objects)
        assert response.status_code == 404, response.content


def test_viewer_reads_but_cannot_launch_or_stop(make_actor, tenant_owner, objects, catalog):
    viewer = make_actor(Role.VIEWER, tenant=tenant_owner.tenant)
    client = viewer.token_client()

    assert client.get(viewer.url("/instances")).json()["count"] == 1
    launch = client.post(viewer.url("/instances"), launch_body(), format="json")
    stop = client.post(viewer.url(f"/instances/{objects['instance']}/stop"))

    assert launch.status_code == stop.status_code == 403
    assert launch.json()["error"]["code"] == stop.json()["error"]["code"] == "role_forbidden"


def test_member_launches(make_actor, tenant_owner, catalog):
    member = make_actor(Role.MEMBER, tenant=tenant_owner.tenant)

    response = member.token_client().post(member.url("/instances"), launch_body(), format="json")

    assert response.status_code == 201
    assert response.json()["state"] == "pending"


# --- query counts -------------------------------------------------------------------------------------


def _count_queries(client, url):
    client.get(url)  # warm up: the first request of a token also records its last use
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response.json()["count"]


def test_instance_list_query_count_does_not_grow(tenant_owner, make_instance, ssh_key):
    client = tenant_owner.token_client()

    def add(n):
        for _ in range(n):
            instance = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, env={"A": "1"})
            instance.ssh_keys.add(ssh_key)

    add(2)
    few, count = _count_queries(client, tenant_owner.url("/instances"))
    assert count == 2
    add(23)
    many, count = _count_queries(client, tenant_owner.url("/instances"))
    assert count == 25
    assert many == few


def test_ssh_key_list_query_count_does_not_grow(tenant_owner):
    client = tenant_owner.token_client()

    def add(n, private=False):
        for i in range(n):
            account_services.ssh_key_create(
                actor=tenant_owner.user,
                tenant=tenant_owner.tenant,
                name=f"key-{i}",
                public_key=ed25519_public_key(),
                private=private,
            )

    add(2)
    few, count = _count_queries(client, tenant_owner.url("/ssh-keys"))
    assert count == 2
    add(12)
    add(11, private=True)
    many, count = _count_queries(client, tenant_owner.url("/ssh-keys"))
    assert count == 25
    assert many == few


def test_instance_events_query_count_does_not_grow(tenant_owner, objects):
    from apps.instances import services
    from apps.instances.states import Observation

    url = tenant_owner.url(f"/instances/{objects['instance']}/events")
    client = tenant_owner.token_client()
    few, _ = _count_queries(client, url)
    for _ in range(12):
        services.instance_observe(instance_id=objects["instance"], observation=Observation.POD_READY)
        services.instance_observe(
            instance_id=objects["instance"], observation=Observation.FAILED, reason="crash_loop"
        )
        client.post(tenant_owner.url(f"/instances/{objects['instance']}/start"))
    many, count = _count_queries(client, url)
    assert count > 25
    assert many == few
