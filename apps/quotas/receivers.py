"""What quotas do when lower apps announce a change (connected in QuotasConfig.ready)."""

from __future__ import annotations

from typing import Any

from apps.quotas.services import quota_for


def default_quota_of_created_tenant(sender: Any, *, tenant: Any, **kwargs: Any) -> None:
    """A new tenant gets the default limits from settings, visible to staff from day one
    (apps.tenants.signals.tenant_created)."""
    quota_for(tenant)
