"""What storage does when lower apps announce a change (connected in StorageConfig.ready)."""

from __future__ import annotations

from typing import Any

from apps.storage.closing import tenant_storage_close


def close_storage_of_closed_tenant(sender: Any, *, tenant: Any, **kwargs: Any) -> None:
    """Volumes' deletion begins now; object storage access keys are revoked by a task once the close commits
    (apps.tenants.signals.tenant_closing)."""
    tenant_storage_close(tenant=tenant)
