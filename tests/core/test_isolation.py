"""The isolation harness: every route of the URL configuration, every method its view implements.

- Without credentials every route answers 401, except the public ones (schema and docs).
- A session and a full-scope API token of tenant A get 404 on tenant B's URLs (real objects of B in every
  URL kwarg), and 404 on tenant A's URLs carrying B's object ids; nothing of B changes.
- Global routes (/me, /tenants, /invitations/accept, the catalog) each have a check that they do not show
  one tenant's data to another.

Routes come from the resolver (tests/core/routes.py); a route the harness cannot build a URL for, or that is
neither tenant-scoped nor listed as global or public, fails `test_every_api_route_is_covered`, and each of
its parametrized cases fails too, with a message naming what to register.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.tenants.api.base import TenantAPIView
from apps.tenants.models import Membership
from tests.conftest import Actor
from tests.core import routes
from tests.core.routes import GLOBAL, PUBLIC, TENANT, Route, UncoveredRoute, classify, url_values
from tests.factories import MembershipFactory, make_token
from tests.tenants.support import assert_error, make_invitation

ROUTES = routes.api_routes()


def _kind_or_none(route: Route) -> str | None:
    try:
        return classify(route)
    except UncoveredRoute:
        return None  # collected into every test below, where classify() fails with its message


def _cases(*kinds: str, methods: bool = True, needs_objects: bool = False) -> list[Any]:
    cases = []
    for route in ROUTES:
        kind = _kind_or_none(route)
        if kind is not None and kind not in kinds:
            continue
        if needs_objects and kind is not None and route.kwargs == (routes.TENANT_KWARG,):
            continue
        if not methods:
            cases.append(pytest.param(route, id=route.template))
            continue
        for method in route.methods or ("GET",):
            cases.append(pytest.param(route, method, id=f"{method} {route.template}"))
    return cases


def send(client: APIClient, method: str, url: str) -> Any:
    """A request whose body, for the methods that take one, is invalid everywhere: another tenant's object
    must answer 404 before any validation (a 400 would tell the object apart from a missing one)."""
    if method in ("POST", "PUT", "PATCH"):
        return client.generic(method, url, '{"isolation_probe": true}', content_type="application/json")
    return client.generic(method, url)


def _session(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _audit_count(tenant: Any) -> int:
    return AuditEvent.objects.filter(tenant=tenant).count()


# --- coverage ----------------------------------------------------------------------------------------


def test_the_walk_finds_the_api_routes() -> None:
    names = {route.name for route in ROUTES}
    assert {"api:me", "api:tenant-list", "api:member-detail", "api:token-detail", "api:schema"} <= names
    member_detail = next(r for r in ROUTES if r.name == "api:member-detail")
    assert member_detail.template == "/api/v1/tenants/<slug:tenant_slug>/members/<uuid:member_id>"
    assert member_detail.kwargs == ("tenant_slug", "member_id")
    assert set(member_detail.methods) == {"GET", "PATCH", "DELETE", "OPTIONS"}


def test_every_api_route_is_covered() -> None:
    problems = []
    for route in ROUTES:
        try:
            classify(route)
        except UncoveredRoute as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_registries_name_only_existing_routes() -> None:
    names = {route.name for route in ROUTES}
    assert set(routes.GLOBAL_ROUTES) <= names, set(routes.GLOBAL_ROUTES) - names
    assert names >= routes.PUBLIC_ROUTES, routes.PUBLIC_ROUTES - names
    assert set(GLOBAL_LEAK_CHECKS) == set(routes.GLOBAL_ROUTES)


# --- meta-tests: the harness notices what it does not cover --------------------------------------------


class _WidgetView(TenantAPIView):
    permission_map: dict = {}

    def get(self, request: Any, tenant_slug: str, widget_id: str) -> Any:  # pragma: no cover
        raise AssertionError("never called")


def test_an_unregistered_url_kwarg_fails_with_instructions() -> None:
    fake = Route(
        name="api:widget-detail",
        template="/api/v1/tenants/<slug:tenant_slug>/widgets/<uuid:widget_id>",
        view_class=_WidgetView,
        kwargs=("tenant_slug", "widget_id"),
        methods=("GET",),
    )
    with pytest.raises(UncoveredRoute, match=r"widget_id.*KWARG_FACTORIES"):
        classify(fake)
    # Registering a factory is all it takes.
    assert classify(fake, factories={**routes.KWARG_FACTORIES, "widget_id": lambda w: None}) == TENANT


def test_an_unclassified_global_route_fails_with_instructions() -> None:
    fake = Route(
        name="api:gadgets", template="/api/v1/gadgets", view_class=_WidgetView, kwargs=(), methods=("GET",)
    )
    with pytest.raises(UncoveredRoute, match="GLOBAL_ROUTES"):
        classify(fake)
    assert classify(fake, global_routes={"api:gadgets": "test"}) == GLOBAL
    assert classify(fake, public=frozenset({"api:gadgets"})) == PUBLIC


def test_a_tenant_route_whose_view_skips_tenant_resolution_fails() -> None:
    from rest_framework.views import APIView

    fake = Route(
        name="api:plain",
        template="/api/v1/tenants/<slug:tenant_slug>/plain",
        view_class=APIView,
        kwargs=("tenant_slug",),
        methods=("GET",),
    )
    with pytest.raises(UncoveredRoute, match="TenantScopedMixin"):
        classify(fake)


@override_settings(ROOT_URLCONF="tests.core.urls_uncovered")
def test_the_walk_reports_a_route_added_to_the_url_configuration() -> None:
    added = [r for r in routes.api_routes() if r.name == "api-test:widget-detail"]
    assert len(added) == 1
    assert added[0].methods == ("GET", "OPTIONS")
    with pytest.raises(UncoveredRoute, match="widget_id"):
        classify(added[0])


# --- (a) no credentials: 401 ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), _cases(GLOBAL, TENANT))
def test_unauthenticated_requests_get_401(route: Route, method: str) -> None:
    classify(route)
    url = route.url(url_values(route, routes.make_world()))

    anonymous = send(APIClient(), method, url)
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"].startswith("Bearer")

    garbage = APIClient()
    garbage.credentials(HTTP_AUTHORIZATION="Bearer gpc_notarealtoken_0123456789abcdef")
    assert_error(send(garbage, method, url), 401, "authentication_failed")


@pytest.mark.django_db
@pytest.mark.parametrize("route", _cases(PUBLIC, methods=False))
def test_public_routes_answer_without_credentials(route: Route) -> None:
    assert classify(route) == PUBLIC
    if "GET" in route.methods:
        assert APIClient().get(route.url({})).status_code == 200
    else:  # a receiver (the Stripe webhook) checks its own signature, never our credentials
        assert APIClient().post(route.url({}), {}, format="json").status_code not in (401, 403)


# --- (b) tenant A's credentials on tenant B's URLs: 404 -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), _cases(TENANT))
def test_another_tenants_url_answers_404(route: Route, method: str, make_actor: Callable[..., Actor]) -> None:
    assert classify(route) == TENANT
    a = make_actor()
    b = routes.make_world()
    b_url = route.url(url_values(route, b))
    # A user in both tenants, holding a token of A: the token is bound to A.
    both = make_actor(tenant=a.tenant)
    MembershipFactory(tenant=b.tenant, user=both.user)
    before = _audit_count(b.tenant)

    for who, client in [
        ("session of A", a.session_client()),
        ("token of A", a.token_client()),
        ("token of A held by a member of B", both.token_client()),
    ]:
        response = send(client, method, b_url)
        assert response.status_code == 404, (who, response.status_code, response.content[:300])
        assert_error(response, 404, "not_found")

    assert _audit_count(b.tenant) == before
    if method == "GET":  # control: the same route answers A's own URL
        own = a.token_client().get(route.url(url_values(route, routes.World(a.tenant, a.user))))
        assert own.status_code == 200, own.content[:300]


# --- (c) tenant A's URL with tenant B's object ids: 404 -------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("route", "method"), _cases(TENANT, needs_objects=True))
def test_own_tenant_url_with_another_tenants_ids_answers_404(
    route: Route, method: str, make_actor: Callable[..., Actor]
) -> None:
    assert classify(route) == TENANT
    a = make_actor()
    b = routes.make_world()
    values = url_values(route, b)
    values[routes.TENANT_KWARG] = a.tenant.slug
    url = route.url(values)
    before = (_audit_count(a.tenant), _audit_count(b.tenant))

    # The same URL with ids that exist nowhere: B's ids must be indistinguishable from them.
    missing = route.url({**values, **{k: uuid.uuid4() for k in route.kwargs if k != routes.TENANT_KWARG}})

    for who, client in [("session of A", a.session_client()), ("token of A", a.token_client())]:
        response = send(client, method, url)
        if method == "OPTIONS":
            # Metadata about the view, never about the object: it must not be an existence oracle.
            nowhere = send(client, method, missing)
            assert (response.status_code, response.json()) == (nowhere.status_code, nowhere.json()), who
            continue
        assert response.status_code == 404, (who, response.status_code, response.content[:300])
        assert response.json() == send(client, method, missing).json()
        assert_error(response, 404, "not_found")

    assert (_audit_count(a.tenant), _audit_count(b.tenant)) == before


# --- global routes: 401 above, and no data of B for A ----------------------------------------------------


def _check_me(a: Actor, b: routes.World) -> None:
    other = routes.make_world()
    MembershipFactory(tenant=other.tenant, user=a.user)
    session = a.session_client().get("/api/v1/me").json()
    assert {m["tenant"] for m in session["memberships"]} == {a.tenant.slug, other.tenant.slug}
    token = a.token_client().get("/api/v1/me").json()
    assert [m["tenant"] for m in token["memberships"]] == [a.tenant.slug]
    assert token["token"]["tenant"] == a.tenant.slug


def _check_tenant_list(a: Actor, b: routes.World) -> None:
    other = routes.make_world()
    MembershipFactory(tenant=other.tenant, user=a.user)
    session = a.session_client().get("/api/v1/tenants").json()
    assert {t["slug"] for t in session["results"]} == {a.tenant.slug, other.tenant.slug}
    assert session["count"] == 2
    token = a.token_client().get("/api/v1/tenants").json()
    assert [t["slug"] for t in token["results"]] == [a.tenant.slug]
    filtered = a.session_client().get("/api/v1/tenants", {"status": "active", "ordering": "name"}).json()
    assert b.tenant.slug not in {t["slug"] for t in filtered["results"]}


def _check_invitation_accept(a: Actor, b: routes.World) -> None:
    _, secret = make_invitation(tenant=b.tenant, invited_by=b.owner, email="someone-else@example.com")
    for client in (a.session_client(), a.token_client()):
        response = client.post("/api/v1/invitations/accept", {"token": secret}, format="json")
        assert_error(response, 404, "invitation_not_found")
    assert not Membership.objects.filter(tenant=b.tenant, user=a.user).exists()


def _check_catalog(route: Route) -> Callable[[Actor, routes.World], None]:
    def check(a: Actor, b: routes.World) -> None:
        _b_token, b_secret = make_token(user=b.owner, tenant=b.tenant)
        b_client = APIClient()
        b_client.credentials(HTTP_AUTHORIZATION=f"Bearer {b_secret}")
        seen_by_a = a.token_client().get(route.url({}))
        seen_by_b = b_client.get(route.url({}))
        assert seen_by_a.status_code == seen_by_b.status_code == 200
        assert seen_by_a.json() == seen_by_b.json()  # one catalog for everyone: nothing tenant-specific
        assert b.tenant.slug not in seen_by_a.content.decode()

    return check


def _check_staff_only(route: Route) -> Callable[[Actor, routes.World], None]:
    def check(a: Actor, b: routes.World) -> None:
        url = route.url({"staff_tenant_slug": b.tenant.slug})
        own = route.url({"staff_tenant_slug": a.tenant.slug})
        body = '{"mode": "postpaid", "kind": "promotional", "amount": "5.00", "reason": "probe"}'
        method = "POST" if "POST" in route.methods else "PUT"
        before = (_audit_count(a.tenant), _audit_count(b.tenant))
        for client in (a.session_client(), a.token_client()):
            for target in (url, own):
                response = client.generic(method, target, body, content_type="application/json")
                assert_error(response, 404, "not_found")
        assert (_audit_count(a.tenant), _audit_count(b.tenant)) == before

    return check


def _route(name: str) -> Route:
    return next(r for r in ROUTES if r.name == name)


GLOBAL_LEAK_CHECKS: dict[str, Callable[[Actor, routes.World], None]] = {
    "api:me": _check_me,
    "api:tenant-list": _check_tenant_list,
    "api:invitation-accept": _check_invitation_accept,
    **{
        name: _check_catalog(_route(name))
        for name in ("api:region-list", "api:gpu-type-list", "api:instance-type-list", "api:image-list")
        if any(r.name == name for r in ROUTES)
    },
    **{
        name: _check_staff_only(_route(name))
        for name in ("api:staff-credit-grant", "api:staff-billing-mode")
        if any(r.name == name for r in ROUTES)
    },
}


@pytest.mark.django_db
@pytest.mark.parametrize("route", _cases(GLOBAL, methods=False))
def test_global_routes_do_not_reveal_another_tenants_data(
    route: Route, make_actor: Callable[..., Actor]
) -> None:
    assert classify(route) == GLOBAL
    check = GLOBAL_LEAK_CHECKS.get(route.name)
    assert check is not None, (
        f"{route}: add a check to GLOBAL_LEAK_CHECKS in tests/core/test_isolation.py proving it does not "
        f"reveal another tenant's data ({routes.GLOBAL_ROUTES[route.name]})."
    )
    a = make_actor()
    b = routes.make_world()
    url_values(route, b)
    check(a, b)
