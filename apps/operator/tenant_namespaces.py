"""A tenant's namespace objects (Namespace, ResourceQuota, LimitRange, ServiceAccount, NetworkPolicies, the
logs reader's RoleBinding): built (`due`) and applied (`ensure`) here, and nowhere else. Applied

- when the tenant's quota changes, in every region where it has live instances or volumes
  (`apply_tenant_namespaces`, the task on `quota_changed`), instead of on every launch (docs/operator.md
  "The launch path"); a launch into a namespace that is missing, or whose ResourceQuota refuses the pod,
  applies them itself (reconciler._run);
- by the operator's resync, which compares them with its stores by the digest stamped on every applied
  object (applied.py) and applies a tenant's objects only when one is missing or its stamp differs from the
  manifest due now (a quota changed, a policy edited in code). Before, every pass applied every object of
  every tenant: 8 PATCHes per tenant, 40,000 per pass for 5,000 tenants (docs/benchmarks.md).

An edit by hand that keeps the stamp annotation is not seen by the resync (the same holds for Services and
Secrets, applied.py); deleting an object, or editing its annotations, is. Without the stores of these kinds
(a credential that may not list them) every tenant's objects are applied, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from kubernetes.client.rest import ApiException

from apps.catalog.models import GpuType, Region
from apps.instances.models import Instance
from apps.instances.states import State
from apps.operator import applied, manifests
from apps.operator.client import CLUSTER_ERRORS, api_client, has_cluster, reachable_here
from apps.operator.cluster import Cluster, Manifest
from apps.operator.specs import logs_reader_from, namespace_spec_for
from apps.quotas.models import TenantQuota
from apps.quotas.services import quota_for
from apps.storage.models import Volume, VolumeState
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

Stamps = dict[tuple[str, str, str], Manifest]  # (kind, namespace, name) -> the object in the store


def due(
    tenant: Tenant,
    region: Region,
    gpu_types: Iterable[GpuType] | None = None,
    *,
    quota: TenantQuota | None = None,
) -> list[Manifest]:
    """The tenant's namespace objects in the region as they should be now. `gpu_types` (every one) and
    `quota` (the tenant's) are read here unless given: the resync reads them for all its tenants at once."""
    spec = namespace_spec_for(
        tenant,
        region,
        quota or quota_for(tenant),
        gpu_types=GpuType.objects.all() if gpu_types is None else gpu_types,
        gpu_quotas=tenant.gpu_quotas.all(),
        logs_reader=logs_reader_from(settings.LOGS_READER_CLUSTER_ROLE or "", settings.LOGS_READER_SUBJECTS),
    )
    return manifests.make_namespace_objects(spec)


def current(objects: list[Manifest], stamps: Stamps) -> bool:
    """Whether every object is in the stores with the digest of the manifest due now."""
    for manifest in objects:
        meta: dict[str, Any] = manifest["metadata"]
        there = stamps.get((manifest["kind"], meta.get("namespace", ""), meta["name"]))
        if there is None or applied.stamp_of(there) != applied.digest(manifest):
            return False
    return True


def ensure(
    cluster: Cluster,
    tenant: Tenant,
    region: Region,
    *,
    refresh: bool = False,
    objects: list[Manifest] | None = None,
) -> None:
    """Apply the tenant's namespace objects (`objects`: as `due` built them a moment ago). Sent only when
    they differ from what this process applied recently (applied.py), unless `refresh`, which applies them
    whatever it knows."""
    for manifest in due(tenant, region) if objects is None else objects:
        try:
            if refresh:
                cluster.apply(manifest)
            else:
                cluster.apply_changed(manifest)
        except ApiException as exc:
            if manifest["kind"] != "RoleBinding" or exc.status != 403:
                raise
            # Pod logs are a convenience: a cluster whose operator may not bind the logs role yet (RBAC or
            # admission policy not updated, docs/operations.md "Upgrading") still runs instances.
            logger.warning(
                "region %s: the logs reader's RoleBinding in %s was refused (%s); no pod logs there",
                region.slug,
                manifest["metadata"].get("namespace", ""),
                exc.reason,
            )


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
            ensure(Cluster(api_client(region)), tenant, region, refresh=True)
            done += 1
        except CLUSTER_ERRORS as exc:
            logger.warning(
                "namespace objects of %s in region %s: %s (the resync applies them)",
                tenant.slug,
                region.slug,
                type(exc).__name__,
            )
    return done
