"""The API's routes, walked from the URL configuration, and what the isolation harness needs to call them.

`api_routes()` lists every route under /api/v1/ with the methods its view implements. `classify()` sorts a
route into public, global or tenant-scoped and refuses, with instructions, any route it cannot build a URL
for. The harness in test_isolation.py (and the schema test) run over this list, so an endpoint is covered
the day it is added: a new URL kwarg needs a factory in KWARG_FACTORIES, a new route outside
/tenants/<tenant_slug>/ needs an entry in PUBLIC_ROUTES or GLOBAL_ROUTES.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from apps.accounts.models import User
from apps.tenants.api.base import TenantScopedMixin
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Role

API_PREFIX = "/api/v1/"
_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")

# Routes anyone may call without credentials. Keep this list short: everything else answers 401.
PUBLIC_ROUTES = frozenset({"api:schema", "api:docs", "api:redoc", "api:stripe-webhook"})

# Routes outside /tenants/<tenant_slug>/. Each names what it must not reveal across tenants; the check
# itself is GLOBAL_LEAK_CHECKS in test_isolation.py, which fails for a global route without one.
GLOBAL_ROUTES = {
    "api:me": "only the caller's own memberships (only the token's tenant with a token)",
    "api:tenant-list": "only tenants the caller belongs to (only the token's tenant with a token)",
    "api:invitation-accept": "another tenant's invitation answers 404",
    "api:region-list": "the shared catalog: no tenant-owned data",
    "api:gpu-type-list": "the shared catalog: no tenant-owned data",
    "api:instance-type-list": "the shared catalog: no tenant-owned data",
    "api:image-list": "the shared catalog: no tenant-owned data",
    # Staff-only billing tools: is_staff sessions only; every token and every other user gets 404.
    "api:staff-credit-grant": "staff sessions only: anyone else (and any token) gets 404 and changes nothing",
    "api:staff-billing-mode": "staff sessions only: anyone else (and any token) gets 404 and changes nothing",
}

TENANT_KWARG = "tenant_slug"

# Methods every DRF view answers that are not endpoints of their own.
_IMPLICIT_METHODS = frozenset({"head", "options", "trace"})


@dataclass(frozen=True)
class Route:
    name: str  # "api:member-detail"
    template: str  # "/api/v1/tenants/<slug:tenant_slug>/members/<uuid:member_id>"
    view_class: type | None
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]  # upper case, sorted; OPTIONS included when the view has a handler

    def __str__(self) -> str:
        return f"{self.template} ({self.name})"

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(lambda m: "{" + m.group("name") + "}", self.template)

    @property
    def endpoint_methods(self) -> tuple[str, ...]:
        """The methods that are endpoints of their own (what the OpenAPI schema lists)."""
        return tuple(m for m in self.methods if m.lower() not in _IMPLICIT_METHODS)

    def url(self, values: dict[str, Any]) -> str:
        return _PARAM.sub(lambda m: str(values[m.group("name")]), self.template)


def implemented_methods(view_class: type | None) -> tuple[str, ...]:
    """The HTTP methods the view declares and has a handler for."""
    if view_class is None:
        return ()
    names = getattr(view_class, "http_method_names", ())
    return tuple(sorted(m.upper() for m in names if m != "trace" and callable(getattr(view_class, m, None))))


def _walk(patterns: list[Any], prefix: str, namespace: str) -> Iterator[tuple[str, str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}{entry.namespace}:"
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else ""
            yield prefix + str(entry.pattern), name, entry


def api_routes() -> list[Route]:
    """Every route under /api/v1/ of the root URL configuration (config.api_urls and what it includes)."""
    routes = []
    for template, name, pattern in _walk(get_resolver().url_patterns, "/", ""):
        if not template.startswith(API_PREFIX):
            continue
        view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
        kwargs = tuple(m.group("name") for m in _PARAM.finditer(template))
        routes.append(
            Route(
                name=name or f"<unnamed {template}>",
                template=template,
                view_class=view_class,
                kwargs=kwargs,
                methods=implemented_methods(view_class),
            )
        )
    return routes


# --- objects to put in URLs --------------------------------------------------------------------------


@dataclass
class World:
    """One tenant with an owner, in which factories create the objects URLs point at."""

    tenant: Tenant
    owner: User


def _member_id(world: World) -> Any:
    from tests.factories import MembershipFactory

    return MembershipFactory(tenant=world.tenant, role=Role.MEMBER).pk


def _invitation_id(world: World) -> Any:
    import hashlib
    import secrets

    from apps.tenants.models import Invitation

    return Invitation.objects.create(
        tenant=world.tenant,
        email=f"invitee-{secrets.token_hex(4)}@example.com",
        role=Role.MEMBER,
        secret_hash=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        invited_by=world.owner,
        expires_at=timezone.now() + timedelta(days=7),
    ).pk


def _token_id(world: World) -> Any:
    from tests.factories import make_token

    token, _ = make_token(user=world.owner, tenant=world.tenant, name="isolation")
    return token.pk


def _ssh_key_id(world: World) -> Any:
    from apps.accounts import services
    from tests.instances.helpers import ed25519_public_key

    return services.ssh_key_create(
        actor=world.owner, tenant=world.tenant, name="isolation", public_key=ed25519_public_key()
    ).pk


def _instance_id(world: World) -> Any:
    from apps.catalog.models import InstanceType, Region
    from tests.instances.helpers import instance_row, seed

    if not InstanceType.objects.filter(slug="gpu-h100x1").exists():
        seed()
    itype = InstanceType.objects.select_related("gpu_type").get(slug="gpu-h100x1")
    return instance_row(
        tenant=world.tenant,
        name=f"isolation-{uuid.uuid4().hex[:8]}",
        region=Region.objects.get(slug="us-east-1"),
        instance_type=itype,
        created_by=world.owner,
    ).pk


def _cluster_id(world: World) -> Any:
    from tests.instances.cluster_helpers import cluster_row

    return cluster_row(
        tenant=world.tenant, created_by=world.owner, name=f"isolation-{uuid.uuid4().hex[:8]}"
    ).pk


def _quota_request_id(world: World) -> Any:
    from apps.quotas.models import QuotaRequest

    return QuotaRequest.objects.create(
        tenant=world.tenant, requested_by=world.owner, resource="gpus", amount=64, reason="isolation"
    ).pk


def _volume_id(world: World) -> Any:
    from apps.catalog.models import Region
    from tests.support.factories import seed, volume_row

    if not Region.objects.filter(slug="us-east-1").exists():
        seed()
    return volume_row(world.tenant, name=f"isolation-{uuid.uuid4().hex[:8]}").pk


def _bucket_name(world: World) -> Any:
    # Rows only: the harness's requests answer 404 or read rows before any call to the storage service.
    from tests.storage.objects.helpers import bucket_row

    return bucket_row(world.tenant, name=f"isolation-{uuid.uuid4().hex[:8]}", created_by=world.owner).name


def _access_key_id(world: World) -> Any:
    from tests.storage.objects.helpers import access_key_row

    return access_key_row(world.tenant, created_by=world.owner).pk


def _invoice_id(world: World) -> Any:
    from tests.billing.invoices.helpers import make_invoice

    return make_invoice(world.tenant).pk


def _tag_budget_id(world: World) -> Any:
    from apps.billing.models import TagBudget

    return TagBudget.objects.create(
        tenant=world.tenant, key="team", value=f"isolation-{uuid.uuid4().hex[:8]}", monthly_amount=100
    ).pk


# URL kwarg -> a factory that creates the object in the given tenant and returns the value for the URL.
KWARG_FACTORIES: dict[str, Callable[[World], Any]] = {
    TENANT_KWARG: lambda world: world.tenant.slug,
    "member_id": _member_id,
    "invitation_id": _invitation_id,
    "token_id": _token_id,
    "ssh_key_id": _ssh_key_id,
    "instance_id": _instance_id,
    "cluster_id": _cluster_id,
    "quota_request_id": _quota_request_id,
    "invoice_id": _invoice_id,
    "bucket_name": _bucket_name,
    "access_key_id": _access_key_id,
    "volume_id": _volume_id,
    "tag_budget_id": _tag_budget_id,
    # Staff routes name the tenant they act on (not the caller's tenant): /api/v1/staff/tenants/<slug>/...
    "staff_tenant_slug": lambda world: world.tenant.slug,
}


# --- classification ------------------------------------------------------------------------------------

PUBLIC, GLOBAL, TENANT = "public", "global", "tenant"


class UncoveredRoute(AssertionError):
    """The harness cannot test this route until a developer registers it."""


def classify(
    route: Route,
    *,
    factories: dict[str, Callable[[World], Any]] | None = None,
    public: frozenset[str] = PUBLIC_ROUTES,
    global_routes: dict[str, str] | None = None,
) -> str:
    """PUBLIC, GLOBAL or TENANT; raises UncoveredRoute naming what to register."""
    factories = KWARG_FACTORIES if factories is None else factories
    global_routes = GLOBAL_ROUTES if global_routes is None else global_routes
    where = "tests/core/routes.py"
    if route.view_class is None:
        raise UncoveredRoute(f"{route}: not a class-based view; the isolation harness only knows APIViews.")
    unknown = [k for k in route.kwargs if k not in factories]
    if unknown:
        raise UncoveredRoute(
            f"{route}: URL kwarg(s) {unknown} have no factory. Register one in KWARG_FACTORIES ({where}) "
            "that creates the object in a given tenant, so the isolation harness can prove another "
            "tenant's object answers 404."
        )
    if route.name in public:
        return PUBLIC
    if TENANT_KWARG in route.kwargs:
        if not route.template.startswith(f"{API_PREFIX}tenants/<slug:{TENANT_KWARG}>"):
            raise UncoveredRoute(f"{route}: tenant-scoped routes live under /api/v1/tenants/<tenant_slug>/.")
        if not issubclass(route.view_class, TenantScopedMixin):
            raise UncoveredRoute(
                f"{route}: its view {route.view_class.__name__} is not a TenantAPIView; tenant-scoped views "
                "must resolve the tenant through TenantScopedMixin (apps/tenants/api/base.py)."
            )
        return TENANT
    if route.name in global_routes:
        return GLOBAL
    raise UncoveredRoute(
        f"{route}: not classified. Put it under /api/v1/tenants/<tenant_slug>/, or add it to GLOBAL_ROUTES "
        f"(with a leak check in test_isolation.py) or PUBLIC_ROUTES in {where}."
    )


def make_world(**tenant_fields: Any) -> World:
    from tests.factories import MembershipFactory, TenantFactory

    tenant = TenantFactory(**tenant_fields)
    membership: Membership = MembershipFactory(tenant=tenant, role=Role.OWNER)
    return World(tenant=tenant, owner=membership.user)


def url_values(route: Route, world: World) -> dict[str, Any]:
    """Real objects of `world` for every kwarg of the route."""
    return {name: KWARG_FACTORIES[name](world) for name in route.kwargs}
