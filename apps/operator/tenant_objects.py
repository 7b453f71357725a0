"""A tenant's namespace objects (Namespace, ResourceQuota, LimitRange, NetworkPolicy ...) applied when its
quota changes, in every region where it has live instances or volumes, instead of on every launch
(docs/operator.md "The launch path"). A launch into a namespace that is missing, or whose ResourceQuota
refuses the pod, applies them itself (reconciler._run); the operator's resync restores edited ones."""

from __future__ import annotations

import logging
from typing import Any

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.instances.states import State
from apps.operator.client import api_client, has_cluster, reachable_here
from apps.operator.cluster import Cluster
from apps.operator.reconcile_instances import CLUSTER_ERRORS
from apps.operator.reconciler import ensure_tenant_namespace
from apps.storage.models import Volume, VolumeState
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)


def apply_tenant_namespaces(tenant_id: Any) -> int:
    """Apply the tenant's namespace objects in each region where it has something; returns how many
    regions. A closed tenant's namespaces are being collected (gc.py): nothing is applied for it."""
    tenant = Tenant.objects.filter(pk=tenant_id).exclude(status=TenantStatus.CLOSED).first()
    if tenant is None:
        return 0
    region_ids = set(
        Instance.objects.filter(tenant=tenant)
        .exclude(state=State.TERMINATED)
        .values_list("region_id", flat=True)
    ) | set(
        Volume.objects.filter(tenant=tenant)
        .exclude(state=VolumeState.DELETED)
        .values_list("region_id", flat=True)
    )
    done = 0
    for region in Region.objects.filter(pk__in=region_ids).order_by("pk"):
        if not has_cluster(region) or not reachable_here(region):
            continue  # no cluster, or in-cluster and unreachable from here: the resync applies them
        try:
            ensure_tenant_namespace(Cluster(api_client(region)), tenant, region, refresh=True)
            done += 1
        except CLUSTER_ERRORS as exc:
            logger.warning(
                "namespace objects of %s in region %s: %s (the resync applies them)",
                tenant.slug,
                region.slug,
                type(exc).__name__,
            )
    return done
