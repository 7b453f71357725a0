"""The only way views reach a tenant: membership is checked here, and a miss is always 404.

Answering 404 rather than 403 keeps another tenant's existence private.
"""

from __future__ import annotations

from typing import Any

from apps.accounts.models import ApiToken
from apps.accounts.scopes import expand
from apps.core import request_context
from apps.core.errors import Forbidden, NotFound
from apps.tenants.models import Membership, Tenant, TenantStatus
from apps.tenants.roles import PERM_SCOPE, Perm, role_allows

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def access_membership(*, user: Any, tenant_slug: str, token: ApiToken | None = None) -> Membership:
    """The caller's membership in the tenant, or NotFound. A token only reaches its own tenant."""
    if not getattr(user, "is_authenticated", False):
        raise NotFound("Not found.")
    if token is not None and token.tenant.slug != tenant_slug:
        raise NotFound("Not found.")
    membership = _token_membership(token) if token is not None else None
    if membership is None:
        membership = (
            Membership.objects.select_related("tenant", "user")
            .filter(user=user, tenant__slug=tenant_slug)
            .first()
        )
    if membership is None:
        raise NotFound("Not found.")
    request_context.update(tenant=membership.tenant.slug)  # log lines of this request name the tenant
    return membership


def _token_membership(token: ApiToken) -> Membership | None:
    """The membership the token's authentication read along with it (tenants/authentication.py), as of this
    request; None when the token was loaded some other way, or its user has left the tenant."""
    if getattr(token, "membership_id", None) is None:
        return None
    membership = Membership.from_db(
        None,
        ["id", "tenant_id", "user_id", "role"],
        [token.membership_id, token.tenant_id, token.user_id, token.membership_role],  # type: ignore[attr-defined]
    )
    membership.tenant, membership.user = token.tenant, token.user
    return membership


def check_permission(*, membership: Membership, perm: Perm, token: ApiToken | None = None) -> None:
    """Raise Forbidden naming what is missing: the role's permission or the token's scope."""
    if not role_allows(membership.role, perm):
        raise Forbidden(
            f"Your role '{membership.role}' in this tenant does not allow '{perm.value}'.",
            code="role_forbidden",
        )
    if token is not None:
        scope = PERM_SCOPE[perm]
        if scope not in expand(token.scopes):
            raise Forbidden(f"This API token lacks the scope '{scope}'.", code="missing_scope")


def check_tenant_status(*, tenant: Tenant, method: str, allowed_when_suspended: frozenset[str]) -> None:
    """Suspended tenants read and clean up but create and start nothing; closed tenants only read."""
    if method in SAFE_METHODS or tenant.status == TenantStatus.ACTIVE:
        return
    if tenant.status == TenantStatus.SUSPENDED and method not in allowed_when_suspended:
        reason = f" Reason: {tenant.status_reason}" if tenant.status_reason else ""
        raise Forbidden(
            f"This tenant is suspended and cannot create or start anything.{reason}", code="tenant_suspended"
        )
    if tenant.status == TenantStatus.CLOSED:
        raise Forbidden("This tenant is closed; it can only be read.", code="tenant_closed")
