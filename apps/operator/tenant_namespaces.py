"""The resync's pass over tenant namespaces: each tenant's objects (manifests.make_namespace_objects) are
compared with the operator's stores by the digest stamped on every applied object (applied.py), and a
tenant's objects are applied only when one is missing or its stamp differs from the manifest due now (a
quota changed, a policy edited in code). Before, every pass applied every object of every tenant: 8 PATCHes
per tenant, 40,000 per pass for 5,000 tenants (docs/benchmarks.md).

An edit by hand that keeps the stamp annotation is not seen here (the same holds for Services and Secrets,
applied.py); deleting an object, or editing its annotations, is. Without the stores of these kinds (a
credential that may not list them) every tenant's objects are applied, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from apps.catalog.models import GpuType, Region
from apps.operator import applied, manifests
from apps.operator.cluster import Manifest
from apps.operator.specs import logs_reader_from, namespace_spec_for
from apps.quotas.services import quota_for
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

Stamps = dict[tuple[str, str, str], Manifest]  # (kind, namespace, name) -> the object in the store


def due(tenant: Tenant, region: Region, gpu_types: Iterable[GpuType]) -> list[Manifest]:
    """The tenant's namespace objects as reconciler.ensure_tenant_namespace applies them."""
    spec = namespace_spec_for(
        tenant,
        region,
        quota_for(tenant),
        gpu_types=gpu_types,
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
