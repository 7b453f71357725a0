"""Console pages, one module per area. Tenant pages go through `tenant.tenant_page`, which resolves the
tenant from the URL (404 for strangers), checks the role (403 page), and hands the view a `TenantPage`."""

from apps.console.views.home import build_status, home, invitation_accept, tenant_new

__all__ = ["build_status", "home", "invitation_accept", "tenant_new"]
