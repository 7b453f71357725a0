"""Region capacity from what the cluster reports: node allocatable minus the requests of pods on the nodes.

`compute_pools` is pure (node and pod dicts in, pools out). A pool is one GPU type (matched by the node's
`nvidia.com/gpu.product` label and the resource it advertises: `nvidia.com/gpu` or a MIG slice such as
`nvidia.com/mig-1g.10gb`) or the CPU-only pool (nodes advertising no GPU resource).

What is written to `RegionCapacity` is the capacity left for gpucloud's instances: allocatable minus the
requests of every scheduled, unfinished pod EXCEPT the pods of our own instances that hold compute. The
catalog's availability (apps/catalog/selectors.py) subtracts those instances itself, so subtracting their
pods here as well would count them twice; anything else on the nodes (pods of other systems, pods left
behind by terminated instances, another control plane's pods) does lower the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from kubernetes.utils import parse_quantity

from apps.catalog.models import GpuType, Region, RegionCapacity
from apps.instances.models import Instance
from apps.operator import names

logger = logging.getLogger(__name__)

GPU_RESOURCE = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
PRODUCT_LABEL = "nvidia.com/gpu.product"
GIB = Decimal(1024**3)

PoolKey = tuple[str, str] | None  # (product label, resource name), None = the CPU-only pool


@dataclass
class Pool:
    gpus: Decimal = Decimal(0)
    vcpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)  # bytes

    def as_fields(self) -> dict[str, int]:
        return {
            "gpus": max(0, int(self.gpus)),
            "vcpu": max(0, int(self.vcpu)),
            "memory_gib": max(0, int(self.memory / GIB)),
        }


def quantity(value: Any) -> Decimal:
    return Decimal(parse_quantity(value)) if value not in (None, "") else Decimal(0)


def not_ready(node: dict[str, Any]) -> bool:
    """The node reports a Ready condition that is not True: the scheduler will not place pods there, so
    its capacity is not offered (a node that reports no conditions at all is taken at its word)."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") != "True"
    return False


def node_pool(node: dict[str, Any]) -> tuple[PoolKey, str | None]:
    """The pool a node belongs to and the GPU resource it counts (None for CPU-only nodes)."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    product = ((node.get("metadata") or {}).get("labels") or {}).get(PRODUCT_LABEL, "")
    if quantity(allocatable.get(GPU_RESOURCE)) > 0:
        return (product, GPU_RESOURCE), GPU_RESOURCE
    mig = sorted(r for r, v in allocatable.items() if r.startswith(MIG_PREFIX) and quantity(v) > 0)
    if mig:
        return (product, mig[0]), mig[0]
    return None, None


def pod_requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    """Effective requests: the sum over containers, or the largest init container's if that is more."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for resource, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[resource] = total.get(resource, Decimal(0)) + quantity(value)
    for container in spec.get("initContainers") or []:
        for resource, value in ((container.get("resources") or {}).get("requests") or {}).items():
            total[resource] = max(total.get(resource, Decimal(0)), quantity(value))
    return total


def compute_pools(
    nodes: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]], *, exclude_instances: frozenset[str]
) -> dict[PoolKey, Pool]:
    """Pools of the schedulable, ready nodes, less the requests of scheduled unfinished pods other than
    those of `exclude_instances` (instance ids whose usage is accounted elsewhere)."""
    pools: dict[PoolKey, Pool] = {}
    node_info: dict[str, tuple[PoolKey, str | None]] = {}
    for node in nodes:
        if (node.get("spec") or {}).get("unschedulable") or not_ready(node):
            continue
        key, resource = node_pool(node)
        name = (node.get("metadata") or {}).get("name", "")
        node_info[name] = (key, resource)
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        pool = pools.setdefault(key, Pool())
        if resource:
            pool.gpus += quantity(allocatable.get(resource))
        pool.vcpu += quantity(allocatable.get("cpu"))
        pool.memory += quantity(allocatable.get("memory"))
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or node_name not in node_info:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        instance = ((pod.get("metadata") or {}).get("labels") or {}).get(names.INSTANCE_LABEL)
        if instance and instance in exclude_instances:
            continue
        key, resource = node_info[node_name]
        requests = pod_requests(pod)
        pool = pools[key]
        if resource:
            pool.gpus -= requests.get(resource, Decimal(0))
        pool.vcpu -= requests.get("cpu", Decimal(0))
        pool.memory -= requests.get("memory", Decimal(0))
    return pools


def held_instance_ids(region: Region) -> frozenset[str]:
    """Instances of the region whose compute the catalog's availability already subtracts."""
    ids = Instance.objects.filter(region=region, holds_compute=True).values_list("pk", flat=True)
    return frozenset(str(pk) for pk in ids)


def write_pools(region: Region, pools: dict[PoolKey, Pool]) -> int:
    """Upsert one RegionCapacity per pool that maps to a GPU type (or the CPU pool); returns rows written.

    Pools of GPU products the catalog does not know are logged and skipped."""
    by_key = {(g.product_label, g.resource_name): g for g in GpuType.objects.all()}
    now = timezone.now()
    written = 0
    with transaction.atomic():
        for key, pool in sorted(pools.items(), key=lambda item: str(item[0])):
            gpu_type = None
            if key is not None:
                gpu_type = by_key.get(key)
                if gpu_type is None:
                    logger.info("capacity: no GPU type for product %s resource %s", key[0], key[1])
                    continue
            RegionCapacity.objects.update_or_create(
                region=region, gpu_type=gpu_type, defaults={**pool.as_fields(), "observed_at": now}
            )
            written += 1
    return written
