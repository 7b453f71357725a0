"""Cluster admission, all or nothing (apps/instances/cluster_services.py): quota for every node in one locked
admission, funds for the whole cluster's price, and a block with N wholly free nodes chosen under the pool's
row lock, less the nodes promised to clusters not placed yet. Nothing is written when any of it is short.

The node rows stand for what the operator reports (catalog.RegionNode); the pods are the operator's
business and are tested on the sandbox (tests/operator/test_cluster_sandbox.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.catalog.models import GpuType, InstanceType, NodeState, Region, RegionCapacity, RegionNode
from apps.core.errors import Conflict, InvalidInput, PaymentRequired
from apps.instances import cluster_services, cluster_timers, services
from apps.instances.cluster_services import ClusterRequest
from apps.instances.cluster_states import ClusterState
from apps.instances.models import Cluster, Instance
from apps.instances.states import Action, FailureReason, Observation, State
from apps.quotas.services import QuotaExceeded
from tests.billing.wallet_helpers import grant
from tests.conftest import Actor
from tests.factories import TenantFactory
from tests.quotas.conftest import set_quota
from tests.support import factories

pytestmark = pytest.mark.django_db

GIB = 1024**3
ROOMY = {"max_gpus": 10_000, "max_instances": 1_000, "max_vcpu": 1_000_000, "max_memory_gib": 10_000_000}


def nodes(region: Region, block: str, count: int, *, zone: str = "us-east-1a", prefix: str = "") -> None:
    h100 = GpuType.objects.get(slug="h100-80gb")
    RegionNode.objects.bulk_create(
        RegionNode(
            region=region,
            name=f"{prefix or block}-{index}",
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


@pytest.fixture
def roomy(catalog: Any, make_actor: Any) -> Actor:
    """An owner whose quota and the region's H100 pool fit a 64-node cluster (only the nodes limit it)."""
    actor = make_actor()
    set_quota(actor.tenant, **ROOMY)
    region = Region.objects.get(slug="us-east-1")
    RegionCapacity.objects.filter(region=region, gpu_type__slug="h100-80gb").update(
        gpus=8 * 200, vcpu=200 * 200, memory_gib=1750 * 200
    )
    return actor


def create(actor: Actor, nodes: int, **fields: Any) -> Cluster:
    req = ClusterRequest(
        instance_type="gpu-h100x8", region="us-east-1", image="pytorch", node_count=nodes, **fields
    )
    return cluster_services.cluster_create(actor=actor.user, tenant=actor.tenant, req=req)


def test_a_64_node_cluster_is_admitted_into_one_block(roomy: Actor) -> None:
    us = Region.objects.get(slug="us-east-1")
    nodes(us, "spine-1", 70)
    nodes(us, "spine-2", 40)
    cluster = create(roomy, 64, name="big")
    assert (cluster.block, cluster.block_label) == ("spine-1", us.topology_block_label)
    ranks = list(
        Instance.objects.filter(cluster=cluster).order_by("rank").values_list("rank", "name", "gpu_count")
    )
    assert ranks == [(r, f"big-{r}", 8) for r in range(64)]
    assert cluster.state == ClusterState.PENDING and cluster.node_count == 64
    assert cluster.price_per_hour == InstanceType.objects.get(slug="gpu-h100x8").price_per_hour


def test_block_placement_takes_the_tightest_block_that_fits(roomy: Actor) -> None:
    us = Region.objects.get(slug="us-east-1")
    nodes(us, "wide", 8)
    nodes(us, "narrow", 2)
    assert create(roomy, 2, name="pair").block == "narrow"  # the 8-node block stays whole for a big one


def test_a_cluster_that_fits_only_across_blocks_is_refused_for_block_and_admitted_for_any(
    roomy: Actor,
) -> None:
    us = Region.objects.get(slug="us-east-1")
    nodes(us, "b0", 3)
    nodes(us, "b1", 3)
    with pytest.raises(Conflict) as refused:
        create(roomy, 4, name="split")
    assert refused.value.code == "no_capacity"
    assert refused.value.details == {
        "placement": "block",
        "nodes": 4,
        "largest_block_free": 3,
        "region_free": 6,
    }
    assert "placement 'any'" in refused.value.message
    assert not Cluster.objects.exists() and not Instance.objects.exists()
    cluster = create(roomy, 4, name="split", placement="any")
    assert (cluster.block, cluster.block_label) == ("", "")


def test_nodes_promised_to_an_unplaced_cluster_are_not_offered_twice(roomy: Actor, make_actor: Any) -> None:
    us = Region.objects.get(slug="us-east-1")
    nodes(us, "b0", 3)
    create(roomy, 2, name="first")  # pending: its pods are not bound, the nodes still look free
    other = make_actor()
    set_quota(other.tenant, **ROOMY)
    with pytest.raises(Conflict) as refused:
        create(other, 2, name="second")
    assert refused.value.details["largest_block_free"] == 1
    assert create(other, 1, name="third").block == "b0"


def test_without_block_labels_a_zone_is_the_block_and_its_label_the_selector(roomy: Actor) -> None:
    us = Region.objects.get(slug="us-east-1")
    nodes(us, "", 2, zone="us-east-1b", prefix="z")
    cluster = create(roomy, 2, name="zonal")
    assert (cluster.block, cluster.block_label) == ("us-east-1b", "topology.kubernetes.io/zone")


def test_quota_for_all_nodes_in_one_admission_names_what_is_short(roomy: Actor) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 8)
    set_quota(roomy.tenant, **{**ROOMY, "max_gpus": 24})
    with pytest.raises(QuotaExceeded) as refused:
        create(roomy, 4, name="greedy")
    assert refused.value.details == {"resource": "gpus", "limit": 24, "used": 0, "requested": 32}
    set_quota(roomy.tenant, **{**ROOMY, "max_instances": 3})
    with pytest.raises(QuotaExceeded) as refused:
        create(roomy, 4, name="greedy")
    assert refused.value.details["resource"] == "instances" and refused.value.details["requested"] == 4
    assert not Instance.objects.filter(tenant=roomy.tenant).exists()
    assert create(roomy, 3, name="fits").node_count == 3


def test_funds_cover_the_whole_clusters_price(catalog: Any, make_actor: Any) -> None:
    broke = make_actor(tenant=TenantFactory(credit=0))
    set_quota(broke.tenant, **ROOMY)
    nodes(Region.objects.get(slug="us-east-1"), "b0", 4)
    grant(broke.tenant, "6.64")  # ten minutes of two nodes at 19.92/h, not of four
    with pytest.raises(PaymentRequired) as refused:
        create(broke, 4, name="dear")
    assert Decimal(refused.value.details["instance_price_per_hour"]) == Decimal("79.68")
    assert not Cluster.objects.exists()
    assert create(broke, 2, name="cheap").node_count == 2


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"instance_type": "gpu-h100x1"}, "instance_type"),
        ({"node_count": 0}, "node_count"),
        ({"node_count": 65}, "node_count"),
        ({"placement": "rack"}, "placement"),
        ({"on_node_failure": "ignore"}, "on_node_failure"),
        ({"name": "x" * 41}, "name"),
    ],
)
def test_bad_requests_name_the_field_and_write_nothing(
    roomy: Actor, fields: dict[str, Any], field: str
) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 4)
    body = {
        "instance_type": "gpu-h100x8",
        "region": "us-east-1",
        "image": "pytorch",
        "node_count": 2,
        **fields,
    }
    with pytest.raises(InvalidInput) as refused:
        cluster_services.cluster_create(actor=roomy.user, tenant=roomy.tenant, req=ClusterRequest(**body))
    assert field in refused.value.fields
    assert not Cluster.objects.exists()


def observe_all(cluster: Cluster, *observations: Observation) -> None:
    for node in Instance.objects.filter(cluster=cluster).order_by("rank"):
        for observation in observations:
            services.instance_observe(instance_id=node.pk, observation=observation)


def test_a_node_failing_before_the_cluster_ran_fails_every_node(
    roomy: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 3)
    cluster = create(roomy, 3, name="gang")
    first = Instance.objects.get(cluster=cluster, rank=0)
    with django_capture_on_commit_callbacks(execute=True):
        services.instance_observe(
            instance_id=first.pk, observation=Observation.FAILED, reason=FailureReason.NO_CAPACITY
        )
    cluster.refresh_from_db()
    assert (cluster.state, cluster.failure_reason) == (ClusterState.FAILED, "no_capacity")
    states = dict(Instance.objects.filter(cluster=cluster).values_list("rank", "failure_reason"))
    assert states == {0: "no_capacity", 1: "cluster_failed", 2: "cluster_failed"}
    assert not Instance.objects.filter(cluster=cluster, holds_compute=True).exists()
    assert not Instance.objects.filter(cluster=cluster, billing_since__isnull=False).exists()


def test_a_node_lost_while_running_degrades_then_is_replaced_in_its_block(
    roomy: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 3)
    cluster = create(roomy, 2, name="steady")
    observe_all(cluster, Observation.POD_CREATED, Observation.POD_READY)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING and cluster.ran_at is not None
    lost = Instance.objects.get(cluster=cluster, rank=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.instance_observe(instance_id=lost.pk, observation=Observation.FAILED, reason="node_lost")
    cluster.refresh_from_db()
    lost.refresh_from_db()
    assert cluster.state == ClusterState.DEGRADED
    assert lost.state == State.STARTING  # replaced: a new pod, on the cluster's block
    assert cluster.block == "b0"
    services.instance_observe(instance_id=lost.pk, observation=Observation.POD_READY)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING


def test_on_node_failure_stop_stops_the_whole_cluster(
    roomy: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 2)
    cluster = create(roomy, 2, name="careful", on_node_failure="stop")
    observe_all(cluster, Observation.POD_CREATED, Observation.POD_READY)
    with django_capture_on_commit_callbacks(execute=True):
        lost = Instance.objects.get(cluster=cluster, rank=0)
        services.instance_observe(instance_id=lost.pk, observation=Observation.FAILED, reason="node_lost")
    cluster.refresh_from_db()
    assert cluster.desired_state == "stopped"
    # The lost node failed; the other is asked to stop (the test's region has no cluster connection, so the
    # reconcile may record it gone at once).
    other = Instance.objects.get(cluster=cluster, rank=1)
    assert other.desired_state == "stopped" and other.state in ("stopping", "stopped")
    observe_all(cluster, Observation.POD_GONE)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.STOPPED


def test_stop_and_start_act_on_every_node_and_start_is_admitted_whole(roomy: Actor) -> None:
    us = Region.objects.get(slug="us-east-1")
    nodes(us, "b0", 2)
    cluster = create(roomy, 2, name="cycle")
    observe_all(cluster, Observation.POD_CREATED, Observation.POD_READY)
    cluster = cluster_services.cluster_act(actor=roomy.user, cluster=cluster, action=Action.STOP)
    assert cluster.state == ClusterState.STOPPING
    assert set(Instance.objects.filter(cluster=cluster).values_list("state", flat=True)) == {"stopping"}
    observe_all(cluster, Observation.POD_GONE)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.STOPPED
    RegionNode.objects.filter(region=us).update(gpus_requested=8)  # someone else took both machines
    with pytest.raises(Conflict) as refused:
        cluster_services.cluster_act(actor=roomy.user, cluster=cluster, action=Action.START)
    assert refused.value.code == "no_capacity"
    assert set(Instance.objects.filter(cluster=cluster).values_list("state", flat=True)) == {"stopped"}
    RegionNode.objects.filter(region=us).update(gpus_requested=0)
    cluster = cluster_services.cluster_act(actor=roomy.user, cluster=cluster, action=Action.START)
    assert cluster.state == ClusterState.STARTING
    observe_all(cluster, Observation.POD_READY)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING
    with pytest.raises(services.InvalidState) as refused:
        cluster_services.cluster_act(actor=roomy.user, cluster=cluster, action=Action.START)
    assert refused.value.details["allowed_actions"] == ["stop", "terminate"]


def test_terminate_ends_every_node_and_frees_the_name(roomy: Actor) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 2)
    cluster = create(roomy, 2, name="short")
    cluster = cluster_services.cluster_act(actor=roomy.user, cluster=cluster, action=Action.TERMINATE)
    assert cluster.state == ClusterState.TERMINATING
    observe_all(cluster, Observation.POD_GONE)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.TERMINATED and cluster.terminated_at is not None
    assert create(roomy, 2, name="short").state == ClusterState.PENDING


def test_a_customer_acts_on_the_cluster_not_on_one_of_its_nodes(roomy: Actor) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 2)
    node = Instance.objects.get(cluster=create(roomy, 2, name="whole"), rank=0)
    with pytest.raises(services.InvalidState) as refused:
        services.instance_act(actor=roomy.user, instance=node, action=Action.STOP)
    assert refused.value.code == "cluster_node"


def test_a_clusters_timers_stop_the_whole_cluster(roomy: Actor) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 2)
    cluster = create(roomy, 2, name="timed", auto_stop_after=3600)
    observe_all(cluster, Observation.POD_CREATED, Observation.POD_READY)
    cluster.refresh_from_db()
    assert cluster_timers.enforce_cluster_timers(cluster.ran_at + timedelta(seconds=3599)) == 0
    assert cluster_timers.enforce_cluster_timers(cluster.ran_at + timedelta(seconds=3600)) == 1
    cluster.refresh_from_db()
    assert cluster.desired_state == "stopped"
    assert set(Instance.objects.filter(cluster=cluster).values_list("desired_state", flat=True)) == {
        "stopped"
    }
    # The nodes carry no timer of their own: the instances' sweep never stops one node alone.
    assert not Instance.objects.filter(cluster=cluster, auto_stop_after__isnull=False).exists()


def test_a_shared_volume_is_mounted_on_every_node_and_must_be_read_write_many(roomy: Actor) -> None:
    nodes(Region.objects.get(slug="us-east-1"), "b0", 3)
    shared = factories.volume_row(roomy.tenant, name="data", access_mode="ReadWriteMany")
    single = factories.volume_row(roomy.tenant, name="mine")
    with pytest.raises(InvalidInput) as refused:
        create(roomy, 2, name="rwo", volumes=[{"volume_id": str(single.pk), "mount_path": "/data"}])
    assert "volumes" in refused.value.fields and "ReadWriteMany" in refused.value.message
    assert not Cluster.objects.exists() and not single.attachments.exists()
    cluster = create(roomy, 3, name="rwx", volumes=[{"volume_id": str(shared.pk), "mount_path": "/shared"}])
    mounted = shared.attachments.values_list("instance__rank", "mount_path")
    assert sorted(mounted) == [(0, "/shared"), (1, "/shared"), (2, "/shared")]
    assert all(
        node.cluster_id == cluster.pk for node in Instance.objects.filter(volume_attachments__volume=shared)
    )
