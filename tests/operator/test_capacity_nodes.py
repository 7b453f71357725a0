"""Nodes as the capacity pass records them (catalog.RegionNode), for staff's capacity overview.

`node_rows` and `node_state` are pure and table-tested with node and pod dicts; `write_nodes` is tested
against the database; one test runs the operator's capacity pass (`refresh_capacity`) against the sandbox
and cordons a node. That node is the test's own kwok node (a copy of an H100 node with a GPU product label
of its own, as in test_node_loss_sandbox.py): cordoning one of the shared fleet's nodes would change the
capacity other test runs sharing the sandbox are asserting at the same time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.catalog.models import GpuType, NodeState, Region, RegionNode
from apps.operator import names
from apps.operator.capacity_nodes import REASON_MAX, NodeRow, node_rows, node_state, write_nodes
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.operator_loop import refresh_capacity
from tests.fixtures.kube import wait_until
from tests.instances.helpers import seed
from tests.operator.own_nodes import Nodes
from tests.operator.sandbox_support import connect

H100 = "NVIDIA-H100-80GB-HBM3"
GIB = 1024**3
READY = {
    "type": "Ready",
    "status": "True",
    "reason": "KubeletReady",
    "message": "kubelet is posting ready status",
}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def node(
    name: str,
    allocatable: dict[str, str],
    product: str = "",
    *,
    conditions: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
    taints: list[dict[str, str]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_labels = {"nvidia.com/gpu.product": product} if product else {}
    all_labels.update(labels or {})
    spec: dict[str, Any] = {"taints": taints if taints is not None else ([GPU_TAINT] if product else [])}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": all_labels},
        "spec": spec,
        "status": {
            "allocatable": allocatable,
            "conditions": conditions if conditions is not None else [READY],
        },
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


# --- node_state ------------------------------------------------------------------------------------------


def test_a_ready_node_with_only_the_gpu_taint_has_no_reason() -> None:
    assert node_state(node("h1", H100_NODE, H100)) == (NodeState.READY, "")


@pytest.mark.parametrize(
    ("condition", "state", "reason"),
    [
        (
            {
                "type": "Ready",
                "status": "False",
                "reason": "KubeletNotReady",
                "message": "PLEG is not healthy",
            },
            NodeState.NOT_READY,
            "Ready=False: PLEG is not healthy",
        ),
        (
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"},
            NodeState.UNKNOWN,
            "Ready=Unknown: NodeStatusUnknown",
        ),
        (None, NodeState.UNKNOWN, "no Ready condition reported"),
    ],
)
def test_readiness_comes_from_the_ready_condition(
    condition: dict[str, str] | None, state: str, reason: str
) -> None:
    conditions = [condition] if condition else []
    assert node_state(node("n", H100_NODE, H100, conditions=conditions)) == (state, reason)


def test_a_cordoned_node_is_cordoned_whatever_its_readiness_and_says_both() -> None:
    not_ready = {"type": "Ready", "status": "False", "message": "kubelet stopped posting node status"}
    cordoned_taint = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    assert node_state(node("n", H100_NODE, H100, unschedulable=True, taints=[GPU_TAINT, cordoned_taint])) == (
        NodeState.CORDONED,
        "",
    )
    state, reason = node_state(node("n", H100_NODE, H100, unschedulable=True, conditions=[not_ready]))
    assert (state, reason) == (NodeState.CORDONED, "Ready=False: kubelet stopped posting node status")


def test_reason_lists_pressure_and_the_taints_that_repel_pods() -> None:
    conditions = [
        READY,
        {"type": "DiskPressure", "status": "True"},
        {"type": "MemoryPressure", "status": "False"},
        {"type": "NetworkUnavailable", "status": "False"},
    ]
    taints = [
        GPU_TAINT,
        {"key": "maintenance", "value": "bios", "effect": "NoSchedule"},
        {"key": "draining", "effect": "NoExecute"},
        {"key": "preferably-not", "effect": "PreferNoSchedule"},  # the scheduler may still use it
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},  # says what the state says
    ]
    state, reason = node_state(node("n", H100_NODE, H100, conditions=conditions, taints=taints))
    assert state == NodeState.READY
    assert reason == "DiskPressure; taint maintenance=bios:NoSchedule; taint draining:NoExecute"


def test_a_long_reason_is_cut_short() -> None:
    taints = [{"key": f"team-{i:03d}.example.com/reserved", "effect": "NoSchedule"} for i in range(30)]
    _, reason = node_state(node("n", H100_NODE, H100, taints=taints))
    assert len(reason) == REASON_MAX and reason.endswith("…")


# --- node_rows -------------------------------------------------------------------------------------------

ZONE = {"topology.kubernetes.io/zone": "us-east-1a", "node.kubernetes.io/instance-type": "gpu.h100.8x"}
NODES = [
    node("h1", H100_NODE, H100, labels=ZONE),
    node("h2", H100_NODE, H100, unschedulable=True),
    node("mig", {"cpu": "30", "memory": "250Gi", "nvidia.com/mig-1g.10gb": "7"}, H100),
    node("c1", {"cpu": "62", "memory": "250Gi"}),
]


def test_one_row_per_node_with_the_requests_of_its_scheduled_unfinished_pods() -> None:
    mine, gone = str(uuid.uuid4()), str(uuid.uuid4())
    pods = [
        pod("h1", {"nvidia.com/gpu": "2", "cpu": "16", "memory": "128Gi"}, instance=mine),
        pod("h1", {"nvidia.com/gpu": "1", "cpu": "500m"}, "Pending"),  # scheduled, still starting: counts
        # An instance that holds no compute any more: its pod is like anyone else's.
        pod("h1", {"nvidia.com/gpu": "1"}, instance=gone),
        pod("h1", {"nvidia.com/gpu": "4"}, "Succeeded"),  # finished: holds nothing
        pod(None, {"nvidia.com/gpu": "8"}, "Pending"),  # unscheduled
        pod("elsewhere", {"nvidia.com/gpu": "8"}),  # a node the list did not have
        pod("h2", {"nvidia.com/gpu": "8"}),  # a cordoned node still has its pods
        pod("mig", {"nvidia.com/mig-1g.10gb": "3", "nvidia.com/gpu": "1", "memory": "32Gi"}),
        pod("c1", {"cpu": "4"}, init={"cpu": "16", "memory": "1Gi"}),
    ]
    rows = {row.name: row for row in node_rows(NODES, pods, instances=frozenset({mine}))}
    assert list(rows) == ["c1", "h1", "h2", "mig"]
    assert rows["h1"] == NodeRow(
        name="h1",
        gpu_product=H100,
        gpu_resource="nvidia.com/gpu",
        gpus_allocatable=8,
        gpus_requested=4,
        gpus_requested_by_instances=2,
        vcpu_allocatable=Decimal(200),
        vcpu_requested=Decimal("16.5"),
        memory_allocatable=1750 * GIB,
        memory_requested=128 * GIB,
        state=NodeState.READY,
        reason="",
        instance_type="gpu.h100.8x",
        zone="us-east-1a",
    )
    assert (rows["h2"].state, rows["h2"].gpus_requested) == (NodeState.CORDONED, 8)
    # A MIG node counts its slices, not whole GPUs it does not advertise.
    assert (rows["mig"].gpu_resource, rows["mig"].gpus_allocatable, rows["mig"].gpus_requested) == (
        "nvidia.com/mig-1g.10gb",
        7,
        3,
    )
    cpu = rows["c1"]
    assert (cpu.gpu_product, cpu.gpu_resource, cpu.gpus_allocatable, cpu.gpus_requested) == ("", "", 0, 0)
    assert (cpu.vcpu_requested, cpu.memory_requested) == (Decimal(16), GIB)  # the init container's, larger
    assert (cpu.instance_type, cpu.zone) == ("", "")


def test_the_region_s_topology_labels_name_block_and_rack() -> None:
    placed = {
        **ZONE,
        "network.topology.nvidia.com/spine": "spine-2",
        "network.topology.nvidia.com/leaf": "leaf-9",
        "example.com/pod": "pod-a",
    }
    nodes = [node("h1", H100_NODE, H100, labels=placed), node("h2", H100_NODE, H100, labels=ZONE)]
    topograph = {
        row.name: (row.block, row.rack)
        for row in node_rows(
            nodes,
            [],
            instances=frozenset(),
            block_label="network.topology.nvidia.com/spine",
            rack_label="network.topology.nvidia.com/leaf",
        )
    }
    assert topograph == {"h1": ("spine-2", "leaf-9"), "h2": ("", "")}
    own = node_rows(nodes, [], instances=frozenset(), block_label="example.com/pod", rack_label="")
    assert [(row.block, row.rack) for row in own] == [("pod-a", ""), ("", "")]


def test_no_nodes_no_rows() -> None:
    assert node_rows([], [pod("h1", {"cpu": "1"})], instances=frozenset()) == []


# --- write_nodes -----------------------------------------------------------------------------------------


def row(name: str, **fields: Any) -> NodeRow:
    values: dict[str, Any] = {
        "name": name,
        "gpu_product": H100,
        "gpu_resource": "nvidia.com/gpu",
        "gpus_allocatable": 8,
        "gpus_requested": 0,
        "gpus_requested_by_instances": 0,
        "vcpu_allocatable": Decimal(200),
        "vcpu_requested": Decimal(0),
        "memory_allocatable": 1750 * GIB,
        "memory_requested": 0,
        "state": NodeState.READY,
        "reason": "",
        "instance_type": "gpu.h100.8x",
        "zone": "us-east-1a",
    }
    values.update(fields)
    return NodeRow(**values)


@pytest.mark.django_db
def test_write_nodes_upserts_the_region_and_forgets_nodes_the_cluster_no_longer_lists() -> None:
    catalog = seed()
    us, eu = catalog.us_east, catalog.eu_west
    h100 = GpuType.objects.get(product_label=H100, resource_name="nvidia.com/gpu")
    mig = GpuType.objects.get(resource_name="nvidia.com/mig-1g.10gb")
    earlier = timezone.now() - timedelta(minutes=1)
    write_nodes(eu, [row("eu-h1")], now=earlier)
    assert (
        write_nodes(us, [row("h1"), row("h2"), row("c1", gpu_product="", gpu_resource="")], now=earlier) == 3
    )
    first = RegionNode.objects.get(region=us, name="h1")
    assert (first.gpu_type, first.observed_at) == (h100, earlier)

    now = timezone.now()
    written = write_nodes(
        us,
        [
            row(
                "h1",
                gpus_requested=5,
                gpus_requested_by_instances=2,
                vcpu_requested=Decimal("0.25"),
                block="spine-1",
                rack="leaf-3",
            ),
            row("mig", gpu_resource="nvidia.com/mig-1g.10gb", gpus_allocatable=7),
            row("odd", gpu_product="ACME-X1", state=NodeState.CORDONED, reason="Ready=False: gone"),
        ],
        now=now,
    )
    assert written == 3
    nodes = {n.name: n for n in RegionNode.objects.filter(region=us)}
    assert set(nodes) == {"h1", "mig", "odd"}  # h2 and c1 are gone from the cluster, so from here
    updated = nodes["h1"]
    assert updated.pk == first.pk and updated.observed_at == now
    assert (updated.gpus_requested, updated.gpus_requested_by_instances) == (5, 2)
    assert updated.vcpu_requested == Decimal("0.250")
    assert (updated.block, updated.rack) == ("spine-1", "leaf-3")
    assert nodes["mig"].gpu_type == mig
    # A product the catalog does not know keeps its label and has no GPU type.
    assert (nodes["odd"].gpu_type, nodes["odd"].gpu_product) == (None, "ACME-X1")
    assert (nodes["odd"].state, nodes["odd"].reason) == (NodeState.CORDONED, "Ready=False: gone")
    # Another region's nodes are its own.
    assert list(RegionNode.objects.filter(region=eu).values_list("name", flat=True)) == ["eu-h1"]

    assert write_nodes(us, []) == 0
    assert not RegionNode.objects.filter(region=us).exists()
    assert RegionNode.objects.filter(region=eu).exists()


# --- against the sandbox ---------------------------------------------------------------------------------

REGION = "us-east-1"


@pytest.fixture
def own_node(kube_clients: dict[str, client.ApiClient]) -> Iterator[Nodes]:
    nodes = Nodes(client.CoreV1Api(kube_clients[REGION]), f"GPUCLOUD-TEST-NODES-{uuid.uuid4().hex[:8]}")
    try:
        yield nodes
    finally:
        nodes.cleanup()


def set_unschedulable(core: client.CoreV1Api, name: str, value: bool) -> None:
    core.patch_node(name, {"spec": {"unschedulable": value}})


@pytest.mark.django_db
def test_the_capacity_pass_records_every_node_and_a_cordon(sandbox: Any, own_node: Nodes) -> None:
    region: Region = connect(seed().us_east, sandbox)
    cluster = Cluster(api_client(region))
    core = own_node.core
    name = own_node.create()

    def rows_match_the_cluster() -> bool:
        refresh_capacity(cluster, region)
        listed = {n.metadata.name for n in core.list_node().items}
        recorded = set(RegionNode.objects.filter(region=region).values_list("name", flat=True))
        return name in listed and recorded == listed  # other runs add and remove nodes meanwhile

    wait_until(rows_match_the_cluster, timeout=60, what="a RegionNode row for each node of the region")
    fleet_node = RegionNode.objects.select_related("gpu_type").get(region=region, name="us-east-1-h100-0")
    assert fleet_node.gpu_type is not None and fleet_node.gpu_type.slug == "h100-80gb"
    assert (fleet_node.gpus_allocatable, fleet_node.zone, fleet_node.instance_type) == (
        8,
        "us-east-1a",
        "gpu.h100.8x",
    )
    # sandbox/fleet.yaml: us-east-1's H100s are two blocks of two, one node a rack, a block a zone.
    fleet_h100s = [f"us-east-1-h100-{i}" for i in range(4)]
    placed = RegionNode.objects.filter(region=region, name__in=fleet_h100s)
    assert {n.name: (n.zone, n.block, n.rack) for n in placed} == {
        name: (f"us-east-1{'ab'[i // 2]}", f"us-east-1-h100-b{i // 2}", f"us-east-1-h100-b{i // 2}-r{i % 2}")
        for i, name in enumerate(fleet_h100s)
    }
    mine = RegionNode.objects.get(region=region, name=name)
    assert (mine.state, mine.gpu_type, mine.gpu_product) == (NodeState.READY, None, own_node.product)
    assert mine.gpus_allocatable == 8 and mine.gpus_requested == 0  # nobody else's pods tolerate it

    set_unschedulable(core, name, True)
    try:

        def cordoned() -> bool:
            refresh_capacity(cluster, region)
            return RegionNode.objects.get(region=region, name=name).state == NodeState.CORDONED

        wait_until(cordoned, timeout=60, what="the cordoned node's row to say cordoned")
    finally:
        try:
            set_unschedulable(core, name, False)
        except ApiException as exc:
            if exc.status != 404:
                raise

    own_node.delete(name)

    def forgotten() -> bool:
        refresh_capacity(cluster, region)
        return not RegionNode.objects.filter(region=region, name=name).exists()

    wait_until(forgotten, timeout=60, what="the deleted node's row to go")
