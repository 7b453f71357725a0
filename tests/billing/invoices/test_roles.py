"""Roles and token scopes on the invoice endpoints: billing.read (owner, admin, billing; scope
billing:read)."""

from __future__ import annotations

import pytest

from apps.accounts import scopes
from apps.tenants.roles import Role
from tests.billing.invoices.helpers import make_invoice

pytestmark = pytest.mark.django_db

READ = "read"

# (method, path under the tenant, what it needs)
ENDPOINTS = [
    ("get", "/billing/invoices", READ),
    ("get", "/billing/invoices/{invoice}", READ),
    ("get", "/billing/invoices/{invoice}/html", READ),
]
IDS = [f"{method.upper()} {path}" for method, path, _n in ENDPOINTS]

ROLE_CAN = {
    Role.OWNER: {READ},
    Role.ADMIN: {READ},
    Role.BILLING: {READ},
    Role.MEMBER: set(),
    Role.VIEWER: set(),
}


@pytest.fixture
def tenant_owner(make_actor):
    return make_actor(Role.OWNER)


@pytest.fixture
def objects(tenant_owner):
    return {"invoice": str(make_invoice(tenant_owner.tenant).pk)}


def call(client, actor, method, path, objects):
    return getattr(client, method)(actor.url(path.format(**objects)))


@pytest.mark.parametrize("role", list(ROLE_CAN))
@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS, ids=IDS)
def test_roles(make_actor, tenant_owner, objects, role, method, path, needs):
    actor = make_actor(role, tenant=tenant_owner.tenant)

    for client in (actor.session_client(), actor.token_client()):
        response = call(client, actor, method, path, objects)
        if needs in ROLE_CAN[role]:
            assert response.status_code == 200, response.content
        else:
            assert response.status_code == 403, response.content
            assert response.json()["error"]["code"] == "role_forbidden"


@pytest.mark.parametrize(
    ("token_scopes", "can"),
    [
        ((scopes.BILLING_READ,), {READ}),
        ((scopes.BILLING_WRITE,), {READ}),  # write implies read
        ((scopes.INSTANCES_WRITE, scopes.TENANT_ADMIN), set()),
    ],
    ids=["billing:read", "billing:write", "other scopes"],
)
@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS, ids=IDS)
def test_token_scopes(make_actor, tenant_owner, objects, token_scopes, can, method, path, needs):
    actor = make_actor(Role.OWNER, tenant=tenant_owner.tenant, token_scopes=token_scopes)

    response = call(actor.token_client(), actor, method, path, objects)

    if needs in can:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 403, response.content
        error = response.json()["error"]
        assert error["code"] == "missing_scope"
        assert "billing:read" in error["message"]


@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS, ids=IDS)
def test_unauthenticated_is_a_401(api_client, tenant_owner, objects, method, path, needs):
    assert call(api_client, tenant_owner, method, path, objects).status_code == 401


@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS, ids=IDS)
def test_another_tenant_is_a_404(make_actor, tenant_owner, objects, method, path, needs):
    stranger = make_actor(Role.OWNER)

    for client in (stranger.session_client(), stranger.token_client()):
        response = call(client, tenant_owner, method, path, objects)
        assert response.status_code == 404, response.content


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_invoices_cannot_be_written_through_the_api(tenant_owner, objects, method):
    client = tenant_owner.token_client()

    for path in ("/billing/invoices", "/billing/invoices/{invoice}", "/billing/invoices/{invoice}/html"):
        response = call(client, tenant_owner, method, path, objects)
        assert response.status_code == 405, (method, path, response.content)
