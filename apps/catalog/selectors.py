"""Reads of the catalog, including live availability per region and instance type."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import QuerySet, Sum

from apps.catalog.models import GpuType, Image, InstanceType, Region, RegionCapacity, RegionStatus
from apps.instances.models import Instance


def regions() -> QuerySet[Region]:
    return Region.objects.all()


def gpu_types() -> QuerySet[GpuType]:
    return GpuType.objects.all()


def active_instance_types() -> QuerySet[InstanceType]:
    return InstanceType.objects.filter(active=True).select_related("gpu_type")


def images_in(*, region: Region) -> QuerySet[Image]:
    return Image.objects.filter(active=True, regions=region)


def _held_by_pool() -> dict[tuple[Any, Any], dict[str, int]]:
    """(region_id, gpu_type_id or None) -> GPUs, vCPU and memory held by every tenant's instances."""
    rows = (
        Instance.objects.filter(holds_compute=True)
        .values("region_id", "gpu_type_id")
        .annotate(gpus=Sum("gpu_count"), vcpu=Sum("vcpu"), memory_gib=Sum("memory_gib"))
    )
    return {
        (r["region_id"], r["gpu_type_id"]): {
            "gpus": r["gpus"],
            "vcpu": r["vcpu"],
            "memory_gib": r["memory_gib"],
        }
        for r in rows
    }


def _fits(pool: RegionCapacity, held: dict[str, int], instance_type: InstanceType) -> int:
    limits = []
    if instance_type.gpu_count:
        limits.append((pool.gpus - (held.get("gpus") or 0)) // instance_type.gpu_count)
    if pool.vcpu:
        limits.append((pool.vcpu - (held.get("vcpu") or 0)) // instance_type.vcpu)
    if pool.memory_gib:
        limits.append((pool.memory_gib - (held.get("memory_gib") or 0)) // instance_type.memory_gib)
    return max(0, min(limits)) if limits else 0


def availability() -> dict[tuple[Any, Any], int]:
    """(region_id, instance_type_id) -> how many more instances of that type could launch there now.

    From each pool's capacity (declared by staff, or observed by the operator) minus what instances hold.
    A region in maintenance offers its types with none available. Four queries, whatever the catalog size.
    """
    held = _held_by_pool()
    closed = set(Region.objects.filter(status=RegionStatus.MAINTENANCE).values_list("pk", flat=True))
    pools_by_gpu_type: dict[Any, list[RegionCapacity]] = defaultdict(list)
    for pool in RegionCapacity.objects.all():
        pools_by_gpu_type[pool.gpu_type_id].append(pool)
    result: dict[tuple[Any, Any], int] = {}
    for instance_type in InstanceType.objects.filter(active=True):
        for pool in pools_by_gpu_type.get(instance_type.gpu_type_id, []):
            held_here = held.get((pool.region_id, pool.gpu_type_id), {})
            fits = 0 if pool.region_id in closed else _fits(pool, held_here, instance_type)
            result[(pool.region_id, instance_type.pk)] = fits
    return result


def available_count(*, region: Region, instance_type: InstanceType) -> int:
    """Availability of one type in one region (what a launch checks)."""
    if region.status == RegionStatus.MAINTENANCE:
        return 0
    pool = RegionCapacity.objects.filter(region=region, gpu_type=instance_type.gpu_type_id).first()
    if pool is None:
        return 0
    held = Instance.objects.filter(
        holds_compute=True, region=region, gpu_type=instance_type.gpu_type_id
    ).aggregate(gpus=Sum("gpu_count"), vcpu=Sum("vcpu"), memory_gib=Sum("memory_gib"))
    return _fits(pool, held, instance_type)
