"""A cluster in an availability zone (docs/networking.md "Clusters"): `zone` limits its placement to that
zone's blocks (or nodes, placement any), and its nodes are pinned to the zone of the block it got."""

from __future__ import annotations

import pytest

from apps.catalog.models import RegionCapacity
from apps.core.errors import Conflict, InvalidInput
from apps.instances import cluster_services
from apps.instances.cluster_services import ClusterRequest
from apps.instances.models import Cluster, Instance
from apps.operator import manifests, specs
from tests.instances.cluster_helpers import ROOMY, whole_nodes
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db

ZONE_LABEL = "topology.kubernetes.io/zone"


@pytest.fixture
def blocks(catalog, tenant_owner):
    set_quota(tenant_owner.tenant, **ROOMY)
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type__slug="h100-80gb").update(
        gpus=80, vcpu=2000, memory_gib=17500
    )
    whole_nodes(catalog.us_east, "spine-a", 2, zone="us-east-1a")  # the best fit for 2 nodes
    whole_nodes(catalog.us_east, "spine-b", 3, zone="us-east-1b")


def create(actor, node_count: int = 2, **fields) -> Cluster:
    req = ClusterRequest(
        instance_type="gpu-h100x8", region="us-east-1", image="pytorch", node_count=node_count, **fields
    )
    return cluster_services.cluster_create(actor=actor.user, tenant=actor.tenant, req=req)


def test_a_cluster_takes_its_blocks_zone_and_its_nodes_are_pinned_there(tenant_owner, blocks) -> None:
    cluster = create(tenant_owner, name="anyzone")

    assert (cluster.block, cluster.zone) == ("spine-a", "us-east-1a")
    members = Instance.objects.filter(cluster=cluster).select_related("tenant", "region", "gpu_type")
    for node in members.prefetch_related("ssh_keys", "volume_attachments"):
        assert node.zone == "us-east-1a"
        assert (
            manifests.make_pod(specs.spec_from_instance(node))["spec"]["nodeSelector"][ZONE_LABEL]
            == "us-east-1a"
        )


def test_a_cluster_asked_into_a_zone_gets_a_block_there(tenant_owner, blocks) -> None:
    cluster = create(tenant_owner, name="inb", zone="us-east-1b")

    assert (cluster.block, cluster.zone) == ("spine-b", "us-east-1b")


def test_a_zone_without_a_block_that_fits_refuses_the_cluster(tenant_owner, blocks) -> None:
    with pytest.raises(Conflict) as refused:
        create(tenant_owner, name="toobig", zone="us-east-1a", node_count=3)

    assert refused.value.code == "no_capacity" and refused.value.details["zone"] == "us-east-1a"
    assert "zone us-east-1a" in refused.value.message
    assert not Cluster.objects.filter(name="toobig").exists()
    with pytest.raises(InvalidInput) as unknown:
        create(tenant_owner, name="nowhere", zone="us-east-1c")
    assert set(unknown.value.fields) == {"zone"}
