"""Helpers for the console's tenant pages tests: logged-in clients, page URLs, cluster rows and the whole
nodes a cluster's admission looks for; the seeded catalog and instance rows come from
tests/support/factories.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.catalog.models import InstanceType, NodeState, Region, RegionNode
from apps.instances.models import Cluster
from apps.tenants.models import Tenant
from tests.instances.helpers import ed25519_public_key
from tests.support.factories import Catalog, make_instance, seed

__all__ = [
    "Catalog",
    "client_for",
    "cluster_rows",
    "ed25519_public_key",
    "make_instance",
    "page",
    "seed",
    "whole_nodes",
]

GIB = 1024**3


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(name: str, tenant: Tenant, *args: Any) -> str:
    return reverse(f"console:{name}", args=[tenant.slug, *args])


def whole_nodes(region: Region, block: str, count: int, *, instance_type: str = "gpu-h100x8") -> None:
    """`count` machines wholly free for `instance_type` in `block`, as the operator would report them: what a
    cluster's admission needs (catalog.whole_nodes_free)."""
    itype = InstanceType.objects.get(slug=instance_type)
    RegionNode.objects.bulk_create(
        RegionNode(
            region=region,
            name=f"{block}-{instance_type}-{index}",
            gpu_type_id=itype.gpu_type_id,
            gpu_product="NVIDIA-GPU",
            gpu_resource="nvidia.com/gpu",
            gpus_allocatable=itype.gpu_count,
            vcpu_allocatable=Decimal(itype.vcpu + 8),
            memory_allocatable_bytes=(itype.memory_gib + 16) * GIB,
            state=NodeState.READY,
            block=block,
            observed_at=timezone.now(),
        )
        for index in range(count)
    )


def cluster_rows(
    tenant: Tenant,
    *,
    created_by: Any,
    name: str = "gang",
    nodes: int = 2,
    state: str = "running",
    node_state: str = "running",
    block: str = "spine-1",
    instance_type: str = "gpu-h100x8",
    region: str = "us-east-1",
    **fields: Any,
) -> Cluster:
    """A cluster and its nodes written directly (no admission, no reconcile), nodes named NAME-RANK."""
    itype = InstanceType.objects.get(slug=instance_type)
    cluster = Cluster.objects.create(
        tenant=tenant,
        name=name,
        region=Region.objects.get(slug=region),
        instance_type=itype,
        node_count=nodes,
        price_per_hour=itype.price_per_hour,
        block=block,
        block_label="network.topology.nvidia.com/spine" if block else "",
        image_reference="nvcr.io/nvidia/pytorch:24.08-py3",
        state=state,
        created_by=created_by,
        **fields,
    )
    for rank in range(nodes):
        make_instance(
            tenant,
            created_by=created_by,
            name=f"{name}-{rank}",
            instance_type=instance_type,
            region=region,
            state=node_state,
            cluster=cluster,
            rank=rank,
        )
    return cluster


def cluster_form(**fields: Any) -> dict[str, Any]:
    """The cluster form as a browser posts it: two H100 nodes in one block of us-east-1, overridable."""
    return {
        "region": "us-east-1",
        "instance_type": "gpu-h100x8",
        "image": "pytorch",
        "node_count": "2",
        "placement": "block",
        "on_node_failure": "replace",
        **fields,
    }
