"""The schema class settings name (DEFAULT_SCHEMA_CLASS): apps/core/schema.py's, plus what only the tenants
app knows, the permission, roles and token scope each tenant-scoped operation needs.

DRF imports this module while loading its settings, so models and views are imported inside the methods."""

from typing import Any

from apps.core.schema import GpucloudAutoSchema
from apps.tenants.roles import PERM_SCOPE, ROLE_PERMISSIONS


class TenantAutoSchema(GpucloudAutoSchema):
    def _stand_ins(self) -> None:
        """Views resolve the user and the tenant per request; the generator's fake request has neither, so
        its view gets unsaved stand-ins (querysets stay lazy: nothing is read) to find the model and
        document the filters."""
        from apps.accounts.models import User
        from apps.tenants.api.base import TenantScopedMixin
        from apps.tenants.models import Membership, Tenant
        from apps.tenants.roles import Role

        request = getattr(self.view, "request", None)
        if request is not None and not getattr(request.user, "is_authenticated", False):
            request.user = User(pk=0, email="example@example.com")
        if isinstance(self.view, TenantScopedMixin) and not hasattr(self.view, "tenant"):
            self.view.tenant = Tenant(slug="example")
            self.view.membership = Membership(tenant=self.view.tenant, role=Role.OWNER)

    def _add_requirement(self, operation: dict[str, Any]) -> None:
        perm = self._method_perm()
        if perm is None:
            return
        roles = sorted(role.value for role, perms in ROLE_PERMISSIONS.items() if perm in perms)
        needs = (
            f"**Requires** permission `{perm.value}` (roles: {', '.join(roles)}); "
            f"API tokens need the scope `{PERM_SCOPE[perm]}`."
        )
        description = operation.get("description", "")
        operation["description"] = f"{description}\n\n{needs}" if description else needs
