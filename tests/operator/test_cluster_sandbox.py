"""A cluster on the sandbox's real kube-scheduler with gang scheduling on (kwok nodes): its nodes' pods are
one gang on the cluster's block, carry the wiring, and find each other's addresses in the mounted ConfigMap;
a cluster the block cannot hold leaves no pod bound, fails no_capacity, and its pods go.

The test adds three 8-GPU kwok nodes of its own (tests/operator/own_nodes.py), copies of a node of block
us-east-1-h100-b0, with a GPU product label of their own, so only this test's pods land on them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from kubernetes import client

from apps.catalog.models import GpuType, InstanceType, RegionCapacity
from apps.core.errors import Conflict
from apps.instances import cluster_services
from apps.instances.cluster_services import ClusterRequest
from apps.instances.cluster_states import ClusterState
from apps.instances.models import Cluster, Instance, InstanceEvent
from apps.instances.states import Action
from apps.operator import cluster_nodes, gang, observe
from apps.operator.client import api_client
from apps.operator.cluster import Cluster as Kube
from apps.operator.operator_loop import refresh_capacity
from apps.operator.reconciler import reconcile
from tests.instances.helpers import seed
from tests.operator.own_nodes import TIMEOUT, Nodes
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "us-east-1"
BLOCK_LABEL = "network.topology.nvidia.com/spine"


def whole_node_type(region: Any, product: str) -> InstanceType:
    gpu_type = GpuType.objects.create(
        slug=f"gang-{product[-8:].lower()}", model="Test GPU", memory_gib=80, product_label=product
    )
    RegionCapacity.objects.create(region=region, gpu_type=gpu_type, gpus=64, vcpu=1600, memory_gib=14000)
    return InstanceType.objects.create(
        slug=f"{gpu_type.slug}x8",
        name="8x Test GPU",
        gpu_type=gpu_type,
        gpu_count=8,
        vcpu=64,
        memory_gib=512,
        price_per_hour=Decimal("8.0000"),
        whole_node=True,
    )


def nodes_of(cluster: Cluster) -> list[Instance]:
    return list(Instance.objects.filter(cluster=cluster).order_by("rank"))


def reconcile_all(cluster: Cluster) -> None:
    for node in nodes_of(cluster):
        reconcile(node.pk)


def test_a_cluster_runs_as_one_gang_on_its_block_and_one_that_cannot_fit_leaves_no_pod(
    sandbox: Any,
    tenant: SandboxTenant,
    own_nodes: Nodes,
    kube_clients: dict[str, client.ApiClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for _ in range(3):
        own_nodes.create()
    region = connect(seed().us_east, sandbox)
    instance_type = whole_node_type(region, own_nodes.product)
    actor = tenant.actor
    set_quota(actor.tenant, max_gpus=64, max_instances=10, max_vcpu=1000, max_memory_gib=10000)
    kube = Kube(api_client(region))
    refresh_capacity(kube, region)

    def create(name: str, nodes: int) -> Cluster:
        req = ClusterRequest(
            instance_type=instance_type.slug, region=REGION, image="pytorch", node_count=nodes, name=name
        )
        return cluster_services.cluster_create(actor=actor.user, tenant=actor.tenant, req=req)

    cluster = create("train", 2)
    assert (cluster.block, cluster.block_label) == ("us-east-1-h100-b0", BLOCK_LABEL)
    for node in nodes_of(cluster):
        drive(node.pk, state_is("running"), what="running", timeout=TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING

    core = tenant.core(REGION)
    name = cluster_nodes.object_name(cluster.pk)
    pods = [tenant.read_pod(node.pk, REGION) for node in nodes_of(cluster)]
    for rank, pod in enumerate(pods):
        assert pod is not None and pod.spec.node_name in own_nodes.names
        assert pod.spec.hostname == f"train-{rank}" and pod.spec.subdomain == name
        assert pod.spec.node_selector[BLOCK_LABEL] == "us-east-1-h100-b0"
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["NODE_RANK"] == str(rank) and env["NUM_NODES"] == "2" and env["WORLD_SIZE"] == "16"
        assert env["MASTER_ADDR"] == f"train-0.{name}" and env["GPUS_PER_NODE"] == "8"
    assert len({p.spec.node_name for p in pods if p is not None}) == 2
    # The gang: both pods name the cluster's Workload, as the apiserver holds them.
    for pod in pods:
        assert pod is not None
        held = core.read_namespaced_pod(pod.metadata.name, tenant.namespace, _preload_content=False)
        assert gang.gang_of(json.loads(held.data)) == name
    custom = client.CustomObjectsApi(core.api_client)
    workload = custom.get_namespaced_custom_object(
        "scheduling.k8s.io", "v1alpha1", tenant.namespace, "workloads", name
    )
    assert workload["spec"]["podGroups"][0]["policy"]["gang"]["minCount"] == 2

    def published() -> dict[str, str] | None:
        config = core.read_namespaced_config_map(name, tenant.namespace)
        return config.data if "node_ips" in (config.data or {}) else None

    def reconciled_and_published() -> dict[str, str] | None:
        reconcile_all(cluster)
        return published()

    data = wait_for(reconciled_and_published, what="the nodes' addresses", timeout=TIMEOUT)
    ips = [p.status.pod_ip for p in (tenant.read_pod(n.pk, REGION) for n in nodes_of(cluster)) if p]
    assert data["node_ips"].split() == ips
    assert data["hostfile"] == f"train-0.{name} slots=8\ntrain-1.{name} slots=8\n"
    assert f"NODE_IPS={','.join(ips)}" in data["env"]
    assert tenant.net(REGION).read_namespaced_network_policy(name, tenant.namespace).spec.pod_selector

    # A machine of the cluster is lost: cordoned, and its pod failed with a disruption as the kubelet leaves
    # an evicted one. The node fails node_lost, the cluster is degraded, and (on_node_failure `replace`) the
    # node starts again: its pod joins the running gang and lands on the block's free machine.
    lost = nodes_of(cluster)[1]
    lost_pod = tenant.read_pod(lost.pk, REGION)
    assert lost_pod is not None
    admin = client.CoreV1Api(kube_clients["us-east-1"])
    admin.patch_node(lost_pod.spec.node_name, {"spec": {"unschedulable": True}})
    core.patch_namespaced_pod_status(
        lost_pod.metadata.name,
        tenant.namespace,
        {
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "TerminationByKubelet",
                        "lastTransitionTime": timezone.now().isoformat(),
                    }
                ],
            }
        },
    )
    reconcile(lost.pk)
    cluster.refresh_from_db()
    lost.refresh_from_db()
    assert cluster.state == ClusterState.DEGRADED
    assert lost.state in ("starting", "running") and lost.failure_reason == ""
    assert InstanceEvent.objects.filter(instance=lost, reason="node_lost").exists()
    drive(lost.pk, state_is("running"), what="replaced", timeout=TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING
    replaced = tenant.read_pod(lost.pk, REGION)
    assert replaced is not None and replaced.metadata.uid != lost_pod.metadata.uid
    assert replaced.spec.node_name in own_nodes.names and replaced.spec.node_name != lost_pod.spec.node_name

    # One of the three machines is left; the pool and the node rows still say otherwise (as the operator
    # last wrote them, before the first cluster was bound), so admission takes a 2-node cluster that the
    # scheduler cannot place: the gang binds none of it.
    RegionCapacity.objects.filter(gpu_type=instance_type.gpu_type).update(
        gpus=64, vcpu=1600, memory_gib=14000
    )
    monkeypatch.setattr(observe, "UNSCHEDULABLE_TIMEOUT", timedelta(seconds=3))
    stuck = create("stuck", 2)

    def failed() -> bool:
        reconcile_all(stuck)
        stuck.refresh_from_db()
        bound = [p for n in nodes_of(stuck) if (p := tenant.read_pod(n.pk, REGION)) and p.spec.node_name]
        assert bound == [], "the scheduler bound part of a gang"
        return stuck.state == ClusterState.FAILED

    wait_for(failed, what="the unplaceable cluster to fail", timeout=TIMEOUT)
    assert stuck.failure_reason == "no_capacity"

    def pods_gone() -> bool:
        reconcile_all(stuck)
        return all(tenant.read_pod(n.pk, REGION) is None for n in nodes_of(stuck))

    wait_for(pods_gone, what="the failed cluster's pods to go", timeout=TIMEOUT)
    assert not Instance.objects.filter(cluster=stuck, billing_since__isnull=False).exists()

    cluster = cluster_services.cluster_act(actor=actor.user, cluster=cluster, action=Action.TERMINATE)
    for node in nodes_of(cluster):
        drive(node.pk, state_is("terminated"), what="terminated", timeout=TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.TERMINATED
    wait_for(
        lambda: (
            not core.list_namespaced_service(tenant.namespace, field_selector=f"metadata.name={name}").items
        ),
        what="the cluster's Service to go",
        timeout=TIMEOUT,
    )


def test_a_64_node_cluster_is_placed_in_one_block_as_one_gang(
    sandbox: Any, tenant: SandboxTenant, own_nodes: Nodes
) -> None:
    """The region's largest cluster, on 64 kwok machines of one block: admitted there, every pod bound only
    once all fit, each on a machine of its own."""
    own_nodes.create_many(64)
    region = connect(seed().us_east, sandbox)
    instance_type = whole_node_type(region, own_nodes.product)
    set_quota(tenant.actor.tenant, max_gpus=512, max_instances=64, max_vcpu=64 * 64, max_memory_gib=64 * 512)
    refresh_capacity(Kube(api_client(region)), region)
    req = ClusterRequest(
        instance_type=instance_type.slug, region=REGION, image="pytorch", node_count=64, name="big"
    )
    cluster = cluster_services.cluster_create(actor=tenant.actor.user, tenant=tenant.actor.tenant, req=req)
    assert cluster.block == "us-east-1-h100-b0"

    def all_running() -> bool:
        pending = [n for n in nodes_of(cluster) if n.state != "running"]
        for node in pending:
            reconcile(node.pk)
        return all(n.state == "running" for n in nodes_of(cluster))

    wait_for(all_running, what="64 nodes running", timeout=4 * TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING
    machines = [
        p.spec.node_name for n in nodes_of(cluster) if (p := tenant.read_pod(n.pk, REGION)) is not None
    ]
    assert len(machines) == 64 and len(set(machines)) == 64 and set(machines) <= set(own_nodes.names)


def test_a_cluster_that_fits_only_across_blocks_is_refused_for_block_and_runs_for_any(
    sandbox: Any, tenant: SandboxTenant, own_nodes: Nodes
) -> None:
    """Two blocks of the test's own with two free machines each: three nodes fit in neither block, so
    placement `block` is refused no_capacity having written nothing, and `any` runs across both."""
    blocks = [f"{own_nodes.product.lower()}-a", f"{own_nodes.product.lower()}-b"]
    for block in blocks:
        for _ in range(2):
            own_nodes.create(wait=False, labels={BLOCK_LABEL: block})
    wait_for(lambda: all(own_nodes.ready(n) for n in own_nodes.names), what="4 nodes", timeout=TIMEOUT)
    region = connect(seed().us_east, sandbox)
    instance_type = whole_node_type(region, own_nodes.product)
    set_quota(tenant.actor.tenant, max_gpus=64, max_instances=10, max_vcpu=1000, max_memory_gib=10000)
    refresh_capacity(Kube(api_client(region)), region)

    def create(placement: str) -> Cluster:
        req = ClusterRequest(
            instance_type=instance_type.slug,
            region=REGION,
            image="pytorch",
            node_count=3,
            name=f"wide-{placement}",
            placement=placement,
        )
        return cluster_services.cluster_create(actor=tenant.actor.user, tenant=tenant.actor.tenant, req=req)

    with pytest.raises(Conflict) as refused:
        create("block")
    assert refused.value.code == "no_capacity" and refused.value.details["largest_block_free"] == 2
    assert not Cluster.objects.filter(tenant=tenant.actor.tenant).exists()
    cluster = create("any")
    assert cluster.block == ""
    for node in nodes_of(cluster):
        drive(node.pk, state_is("running"), what="running", timeout=TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING
    labels = {
        name: admin_labels[BLOCK_LABEL]
        for name, admin_labels in (
            (n, tenant.core(REGION).read_node(n).metadata.labels) for n in own_nodes.names
        )
    }
    used = {labels[p.spec.node_name] for n in nodes_of(cluster) if (p := tenant.read_pod(n.pk, REGION))}
    assert used == set(blocks)
