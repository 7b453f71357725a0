"""What a tenant's instances hold right now, counted from the instances themselves (never a counter that
could drift)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Q, Sum

from apps.instances.models import Instance
from apps.instances.states import LIVE


@dataclass
class Usage:
    instances: int = 0
    gpus: int = 0
    vcpu: int = 0
    memory_gib: int = 0
    volume_gib: int = 0
    # (gpu_type_id, region_id) -> GPUs held
    gpus_by_type_region: dict[tuple[Any, Any], int] = field(default_factory=dict)

    def gpus_of_type(self, gpu_type_id: Any, region_id: Any = None) -> int:
        return sum(
            n for (t, r), n in self.gpus_by_type_region.items() if t == gpu_type_id and region_id in (None, r)
        )


def usage_of(tenant: Any) -> Usage:
    instances = Instance.objects.filter(tenant=tenant)
    holds = Q(holds_compute=True)
    totals = instances.aggregate(
        instances=Count("id", filter=Q(state__in=list(LIVE))),
        gpus=Sum("gpu_count", filter=holds, default=0),
        vcpu=Sum("vcpu", filter=holds, default=0),
        memory_gib=Sum("memory_gib", filter=holds, default=0),
    )
    by_type: dict[tuple[Any, Any], int] = defaultdict(int)
    rows = (
        instances.filter(holds, gpu_type__isnull=False)
        .values("gpu_type_id", "region_id")
        .annotate(n=Sum("gpu_count"))
    )
    for row in rows:
        by_type[(row["gpu_type_id"], row["region_id"])] = row["n"]
    return Usage(gpus_by_type_region=dict(by_type), volume_gib=_volume_gib(tenant), **totals)


# Usage that an app above quotas measures itself, by resource: storage registers "object_storage_gib" (the
# started GiB its buckets held at the last usage sample) in its AppConfig.ready, so quotas never imports it.
_MEASURES: dict[str, Callable[[Any], int]] = {}


def register_measure(resource: str, measure: Callable[[Any], int]) -> None:
    _MEASURES[resource] = measure


def measured(resource: str, tenant: Any) -> int:
    measure = _MEASURES.get(resource)
    if measure is None:
        raise LookupError(f"No usage measure is registered for {resource}.")
    return measure(tenant)


def _volume_gib(tenant: Any) -> int:
    from apps.storage.models import HOLDS_STORAGE, Volume

    return Volume.objects.filter(tenant=tenant, state__in=list(HOLDS_STORAGE)).aggregate(
        total=Sum("size_gib", default=0)
    )["total"]
