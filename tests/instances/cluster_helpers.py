"""Rows a cluster needs, for the API and CLI tests of clusters: whole H100 nodes the operator would report
(catalog.RegionNode), a quota and a pool with room for them, and a cluster written directly (no admission)
for the route harnesses."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.utils import timezone

from apps.catalog.models import GpuType, InstanceType, NodeState, Region, RegionCapacity, RegionNode
from apps.instances.cluster_states import ClusterState
from apps.instances.models import Cluster
from tests.quotas.conftest import set_quota
from tests.support.factories import instance_row, seed

GIB = 1024**3
ROOMY = {"max_gpus": 10_000, "max_instances": 1_000, "max_vcpu": 1_000_000, "max_memory_gib": 10_000_000}


def whole_nodes(region: Region, block: str, count: int, *, zone: str = "us-east-1a") -> list[RegionNode]:
    """`count` ready 8xH100 nodes with nothing on them, in `block`, as the operator reports them."""
    h100 = GpuType.objects.get(slug="h100-80gb")
    return RegionNode.objects.bulk_create(
        RegionNode(
            region=region,
            name=f"{block}-{index}-{uuid.uuid4().hex[:6]}",
            gpu_type=h100,
            gpu_product="NVIDIA-H100-80GB-HBM3",
            gpu_resource="nvidia.com/gpu",
            gpus_allocatable=8,
            vcpu_allocatable=Decimal(200),
            memory_allocatable_bytes=1750 * GIB,
            state=NodeState.READY,
            zone=zone,
            block=block,
            observed_at=timezone.now(),
        )
        for index in range(count)
    )


def room_for_clusters(tenant: Any, region: Region, *, nodes: int = 16) -> None:
    """A quota that fits big clusters, a region pool of H100s with room for `nodes` whole nodes, and those
    nodes in one block (spine-1)."""
    set_quota(tenant, **ROOMY)
    RegionCapacity.objects.filter(region=region, gpu_type__slug="h100-80gb").update(
        gpus=8 * nodes * 2, vcpu=200 * nodes * 2, memory_gib=1750 * nodes * 2
    )
    if not RegionNode.objects.filter(region=region, block="spine-1").exists():
        whole_nodes(region, "spine-1", nodes)


def cluster_row(
    *, tenant: Any, created_by: Any, name: str, node_count: int = 2, state: str = ClusterState.PENDING
) -> Cluster:
    """A cluster and its node rows written directly (no admission, no reconcile)."""
    if not InstanceType.objects.filter(slug="gpu-h100x8").exists():
        seed()
    region = Region.objects.get(slug="us-east-1")
    itype = InstanceType.objects.select_related("gpu_type").get(slug="gpu-h100x8")
    cluster = Cluster.objects.create(
        tenant=tenant,
        name=name,
        region=region,
        instance_type=itype,
        node_count=node_count,
        price_per_hour=itype.price_per_hour,
        block="spine-1",
        block_label=region.topology_block_label,
        image_reference="nvcr.io/nvidia/pytorch:24.08-py3",
        state=state,
        created_by=created_by,
    )
    node_state = "pending" if state == ClusterState.PENDING else "running"
    for rank in range(node_count):
        instance_row(
            tenant=tenant,
            instance_type=itype,
            region=region,
            created_by=created_by,
            name=f"{name}-{rank}",
            state=node_state,
            cluster=cluster,
            rank=rank,
        )
    return cluster
