"""Base classes for tenant-owned endpoints under /api/v1/tenants/{tenant_slug}/.

The tenant is resolved once, in `initial()`, before any handler runs (Sentry's OrganizationEndpoint does
the same). Each view declares the permission every method needs in `permission_map`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import generics
from rest_framework.request import Request

from apps.accounts.models import ApiToken
from apps.tenants import access
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Perm


class TenantScopedMixin:
    permission_map: ClassVar[dict[str, Perm]] = {}
    # Methods a suspended tenant may still use: reading and cleaning up, never creating or starting.
    allowed_when_suspended: ClassVar[frozenset[str]] = frozenset({"DELETE"})

    tenant: Tenant
    membership: Membership
    request: Any
    kwargs: dict[str, Any]

    @property
    def token(self) -> ApiToken | None:
        auth = self.request.auth
        return auth if isinstance(auth, ApiToken) else None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.membership = access.access_membership(
            user=request.user, tenant_slug=kwargs["tenant_slug"], token=self.token
        )
        self.tenant = self.membership.tenant
        method = (request.method or "GET").upper()
        perm = self.permission_map.get("GET" if method in ("HEAD", "OPTIONS") else method)
        if perm is None:
            return  # the method is not allowed; DRF answers 405 from the handler lookup
        access.check_permission(membership=self.membership, perm=perm, token=self.token)
        access.check_tenant_status(
            tenant=self.tenant, method=method, allowed_when_suspended=self.allowed_when_suspended
        )


class TenantAPIView(TenantScopedMixin, generics.GenericAPIView):
    pass
