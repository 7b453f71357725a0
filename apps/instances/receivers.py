"""What instances do when lower apps announce a change (connected in InstancesConfig.ready)."""

from __future__ import annotations

from typing import Any

from apps.instances import cluster_services, services


def stop_instances_of_suspended_tenant(
    sender: Any, *, tenant: Any, actor: Any, stop_reason: str, **kwargs: Any
) -> list[dict[str, str]]:
    """A suspended tenant runs nothing: stop its instances (apps.tenants.signals.tenant_suspended)."""
    stopped = services.instances_stop_all(tenant=tenant, actor=actor, reason=stop_reason)
    return [{"id": str(instance.pk), "name": instance.name} for instance in stopped]


def terminate_instances_of_closed_tenant(sender: Any, *, tenant: Any, actor: Any, **kwargs: Any) -> None:
    """A closed tenant runs nothing and is billed for nothing more (apps.tenants.signals.tenant_closing)."""
    services.instances_terminate_for_closed_tenant(tenant=tenant, actor=actor)


def start_instances_of_connected_region(sender: Any, *, region: Any, **kwargs: Any) -> int:
    """Launches that waited for the region's cluster start now (apps.catalog.signals.region_connected)."""
    return services.instances_reconcile_pending(region=region)


def settle_cluster(sender: Any, *, cluster_id: Any, **kwargs: Any) -> None:
    """A cluster's node failed or was lost (signals.cluster_needs_settling, once committed)."""
    cluster_services.cluster_settle(cluster_id)
