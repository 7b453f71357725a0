"""Capacity: node allocatable minus the requests of scheduled pods, per GPU type and the CPU pool.

The pure part (`compute_pools`) is table-tested; the rest reads the sandbox fleet (us-east-1: four 8-GPU H100
nodes, four 8-GPU A100 nodes, one MIG node with seven 1g.10gb slices, two CPU nodes). Other test runs share
the sandbox and schedule pods at the same time, so the sandbox tests compare the operator's rows with the
cluster as listed at that moment and retry until both agree.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from kubernetes import client

from apps.catalog.models import GpuType, Region, RegionCapacity
from apps.operator import names
from apps.operator.capacity import Pool, compute_pools, node_pool, pod_requests
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.operator_loop import refresh_capacity
from tests.fixtures.kube import wait_until
from tests.instances.helpers import seed
from tests.operator.sandbox_support import connect

H100 = "NVIDIA-H100-80GB-HBM3"
GIB = 1024**3


def node(
    name: str,
    allocatable: dict[str, str],
    product: str = "",
    unschedulable: bool = False,
    ready: str | None = "True",
) -> dict[str, Any]:
    labels = {"nvidia.com/gpu.product": product} if product else {}
    status: dict[str, Any] = {"allocatable": allocatable}
    if ready is not None:
        status["conditions"] = [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": ready},
        ]
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": unschedulable},
        "status": status,
    }


def pod(
    node_name: str | None,
    requests: dict[str, str],
    phase: str = "Running",
    instance: str | None = None,
    init: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = {names.INSTANCE_LABEL: instance} if instance else {}
    spec: dict[str, Any] = {"containers": [{"resources": {"requests": requests}}]}
    if node_name:
        spec["nodeName"] = node_name
    if init:
        spec["initContainers"] = [{"resources": {"requests": init}}]
    return {"metadata": {"labels": labels}, "spec": spec, "status": {"phase": phase}}


H100_NODE = {"cpu": "200", "memory": "1750Gi", "nvidia.com/gpu": "8"}
NODES = [
    node("h1", H100_NODE, H100),
    node("h2", H100_NODE, H100),
    node("cordoned", H100_NODE, H100, unschedulable=True),
    node("lost", H100_NODE, H100, ready="Unknown"),  # the node controller lost its kubelet
    node("broken", H100_NODE, H100, ready="False"),
    node("silent", {"cpu": "2", "memory": "2Gi"}, ready=None),  # reports no conditions: taken at its word
    node("mig", {"cpu": "30", "memory": "250Gi", "nvidia.com/mig-1g.10gb": "7"}, H100),
    node("c1", {"cpu": "62", "memory": "250Gi"}),
]


def test_pools_from_allocatable() -> None:
    pools = compute_pools(NODES, [], exclude_instances=frozenset())
    assert {k: v.as_fields() for k, v in pools.items()} == {
        (H100, "nvidia.com/gpu"): {"gpus": 16, "vcpu": 400, "memory_gib": 3500},
        (H100, "nvidia.com/mig-1g.10gb"): {"gpus": 7, "vcpu": 30, "memory_gib": 250},
        None: {"gpus": 0, "vcpu": 64, "memory_gib": 252},
    }


def test_requests_of_scheduled_unfinished_pods_are_subtracted() -> None:
    mine = str(uuid.uuid4())
    pods = [
        pod("h1", {"nvidia.com/gpu": "8", "cpu": "192", "memory": "1750Gi"}),
        pod("h2", {"nvidia.com/gpu": "2", "cpu": "500m"}, "Pending"),  # scheduled, still starting
        pod("h2", {"nvidia.com/gpu": "4"}, "Succeeded"),  # finished: holds nothing
        pod(None, {"nvidia.com/gpu": "8"}, "Pending"),  # unscheduled
        pod("h2", {"nvidia.com/gpu": "1"}, instance=mine),  # our instance: the catalog counts it
        pod("cordoned", {"nvidia.com/gpu": "1"}),  # a node outside the pools
        pod("lost", {"nvidia.com/gpu": "1"}),  # so is a node that is not ready
        pod("mig", {"nvidia.com/mig-1g.10gb": "3", "memory": "32Gi"}),
        pod("c1", {"cpu": "4"}, init={"cpu": "16"}),
    ]
    pools = compute_pools(NODES, pods, exclude_instances=frozenset({mine}))
    assert pools[(H100, "nvidia.com/gpu")].as_fields() == {"gpus": 6, "vcpu": 207, "memory_gib": 1750}
    assert pools[(H100, "nvidia.com/mig-1g.10gb")].as_fields() == {"gpus": 4, "vcpu": 30, "memory_gib": 218}
    assert pools[None].as_fields() == {"gpus": 0, "vcpu": 48, "memory_gib": 252}  # the init container's 16


def test_helpers() -> None:
    assert node_pool(NODES[0]) == ((H100, "nvidia.com/gpu"), "nvidia.com/gpu")
    assert node_pool(NODES[-1]) == (None, None)
    assert pod_requests(pod("x", {"cpu": "250m", "memory": "512Mi"})) == {
        "cpu": Decimal("0.25"),
        "memory": 512 * 1024**2,
    }
    assert Pool(gpus=Decimal(-2)).as_fields()["gpus"] == 0  # overcommitted never reads below zero


# --- against the sandbox ---------------------------------------------------------------------------


def _h100_gpu_requests(core: client.CoreV1Api) -> tuple[int, int]:
    """(allocatable H100 GPUs on schedulable nodes, GPUs requested by scheduled unfinished pods on them)."""
    nodes = {
        n.metadata.name: int(n.status.allocatable.get("nvidia.com/gpu", "0"))
        for n in core.list_node(label_selector=f"nvidia.com/gpu.product={H100}").items
        if not n.spec.unschedulable and int(n.status.allocatable.get("nvidia.com/gpu", "0")) > 0
    }
    used = 0
    for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items:
        if p.spec.node_name in nodes and p.status.phase not in ("Succeeded", "Failed"):
            for container in p.spec.containers:
                used += int(
                    ((container.resources and container.resources.requests) or {}).get("nvidia.com/gpu", 0)
                )
    return sum(nodes.values()), used


@pytest.mark.django_db(transaction=True)
def test_capacity_rows_follow_the_fleet_and_scheduled_pods(
    sandbox: Any, make_namespace: Callable[..., str], kube_client: client.ApiClient
) -> None:
    catalog = seed()
    assert_capacity_rows_follow_the_cluster(connect(catalog.us_east, sandbox), kube_client, make_namespace)


def assert_capacity_rows_follow_the_cluster(
    region: Region, kube_client: client.ApiClient, make_namespace: Callable[..., str]
) -> None:
    """The region (connected to the test instance's us-east-1, whose administrator `kube_client` is) gets
    H100 rows equal to the fleet's 32 GPUs minus what scheduled pods request, and a pod of its own taking a
    whole 8-GPU node lowers the row by 8. tests/sandbox/test_instances.py runs it again while make run's
    instance is full."""
    cluster = Cluster(api_client(region))
    core = client.CoreV1Api(kube_client)
    h100 = GpuType.objects.get(slug="h100-80gb")

    def row_matches_cluster() -> bool:
        refresh_capacity(cluster, region)
        allocatable, used = _h100_gpu_requests(core)
        row = RegionCapacity.objects.get(region=region, gpu_type=h100)
        return allocatable == 32 and row.gpus == allocatable - used and row.observed_at is not None

    wait_until(row_matches_cluster, timeout=60, what="the H100 row to equal allocatable minus requests")
    pools = {
        r.gpu_type.slug if r.gpu_type else None: r
        for r in RegionCapacity.objects.filter(region=region).select_related("gpu_type")
    }
    # sandbox-cpu: the region's real kubelet nodes (docs/sandbox.md, "Real nodes").
    assert set(pools) == {"h100-80gb", "a100-80gb", "h100-mig-1g10gb", "sandbox-cpu", None}
    assert pools[None].gpus == 0 and pools[None].vcpu > 0 and pools[None].memory_gib > 0
    assert all(p.observed_at is not None for p in pools.values())

    # A workload that is not one of our instances takes 8 H100s: the pool drops by them.
    namespace = make_namespace(region="us-east-1")
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "eight-gpus"},
            "spec": {
                "nodeSelector": {"nvidia.com/gpu.product": H100},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [
                    {"name": "main", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "8"}}}
                ],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    wait_until(
        lambda: core.read_namespaced_pod("eight-gpus", namespace).status.phase == "Running",
        timeout=60,
        what="the 8-GPU pod to run",
    )

    def row_counts_the_pod() -> bool:
        refresh_capacity(cluster, region)
        allocatable, used = _h100_gpu_requests(core)
        row = RegionCapacity.objects.get(region=region, gpu_type=h100)
        return used >= 8 and row.gpus == allocatable - used and row.gpus <= 32 - 8

    wait_until(row_counts_the_pod, timeout=60, what="the H100 row to drop by the pod's 8 GPUs")
