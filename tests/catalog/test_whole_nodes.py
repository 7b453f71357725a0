"""Whole-node availability by topology block (catalog.selectors.whole_nodes_free): what a multi-node cluster
can get, from the nodes the operator last saw. A per-pool sum overstates it: GPUs free on several nodes are
not a free node."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog import selectors
from apps.catalog.models import InstanceType, NodeState, Region, RegionStatus
from tests.support.factories import Catalog, region_node

pytestmark = pytest.mark.django_db

node = region_node


def test_counts_only_nodes_with_no_gpu_taken_per_block(catalog: Catalog) -> None:
    us = catalog.us_east
    node(us, "a0", block="b0")
    node(us, "a1", block="b0")
    node(us, "a2", block="b0", gpus_requested=1)  # one GPU taken: not whole, whatever is left
    node(us, "b0", block="b1")
    node(us, "b1", block="b1", state=NodeState.CORDONED)
    node(us, "b2", block="b1", state=NodeState.NOT_READY)
    node(us, "b3", block="b1", vcpu_requested=150)  # another pod holds its CPUs: an 8-GPU type needs 192
    node(us, "c0", block="b2", gpus_allocatable=4)  # a smaller machine of the same GPU

    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    assert selectors.whole_nodes_free(region=us, instance_type=h100x8) == {"b0": 2, "b1": 1}
    h100x1 = InstanceType.objects.get(slug="gpu-h100x1")
    assert selectors.whole_nodes_free(region=us, instance_type=h100x1) == {"b0": 2, "b1": 2, "b2": 1}


def test_a_pool_with_gpus_free_on_every_node_has_no_whole_node(catalog: Catalog) -> None:
    us = catalog.us_east
    for index in range(4):
        node(us, f"n{index}", block="b0", gpus_requested=4)
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    assert selectors.whole_nodes_free(region=us, instance_type=h100x8) == {}


def test_without_block_labels_a_zone_is_a_block(catalog: Catalog) -> None:
    us = catalog.us_east
    node(us, "n0", zone="us-east-1a")
    node(us, "n1", zone="us-east-1b")
    node(us, "n2", zone="us-east-1b", block="spine-7")
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    assert selectors.whole_nodes_free(region=us, instance_type=h100x8) == {
        "spine-7": 1,
        "us-east-1a": 1,
        "us-east-1b": 1,
    }


def test_a_region_in_maintenance_and_cpu_types_have_none(catalog: Catalog) -> None:
    us = catalog.us_east
    node(us, "n0", block="b0")
    cpu = InstanceType.objects.get(slug="cpu-4x")
    assert selectors.whole_nodes_free(region=us, instance_type=cpu) == {}
    Region.objects.filter(pk=us.pk).update(status=RegionStatus.MAINTENANCE)
    us.refresh_from_db()
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    assert selectors.whole_nodes_free(region=us, instance_type=h100x8) == {}
    assert selectors.whole_nodes_free_by_type() == {}


def test_by_type_for_every_region_in_a_fixed_number_of_queries(catalog: Catalog) -> None:
    us, eu = catalog.us_east, catalog.eu_west
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    h100x1 = InstanceType.objects.get(slug="gpu-h100x1")
    node(us, "u0", block="b0")
    with CaptureQueriesContext(connection) as few:
        selectors.whole_nodes_free_by_type()
    for index in range(20):
        node(us, f"u{index + 1}", block=f"b{index % 3}")
        node(eu, f"e{index}", block="e0", gpus_requested=index % 2)
    with CaptureQueriesContext(connection) as many:
        result = selectors.whole_nodes_free_by_type()
    assert len(many) == len(few) == 2
    assert result[(us.pk, h100x8.pk)] == {"b0": 8, "b1": 7, "b2": 6}
    assert result[(eu.pk, h100x1.pk)] == {"e0": 10}


def test_the_catalog_api_lists_whole_nodes_per_block(owner: Any, catalog: Catalog) -> None:
    us = catalog.us_east
    node(us, "n0", block="us-east-1-h100-b0")
    node(us, "n1", block="us-east-1-h100-b0")
    node(us, "n2", block="us-east-1-h100-b1", gpus_requested=2)
    body = owner.token_client().get("/api/v1/instance-types?region=us-east-1").json()
    by_slug = {t["slug"]: t for t in body["results"]}
    [h100x8] = by_slug["gpu-h100x8"]["regions"]
    assert h100x8["whole_nodes_free"] == {"us-east-1-h100-b0": 2}
    [cpu] = by_slug["cpu-4x"]["regions"]
    assert cpu["whole_nodes_free"] == {}


def test_a_region_names_its_topology_labels_as_label_keys(catalog: Catalog) -> None:
    us = catalog.us_east
    assert (us.topology_block_label, us.topology_rack_label) == (
        "network.topology.nvidia.com/spine",
        "network.topology.nvidia.com/leaf",
    )
    us.topology_block_label = "backend.coreweave.cloud/leafgroup"
    us.topology_rack_label = ""  # optional
    us.full_clean()
    us.topology_block_label = "not/a/label key"
    with pytest.raises(ValidationError) as refused:
        us.full_clean()
    assert set(refused.value.message_dict) == {"topology_block_label"}


# --- node by node: what a launch of one instance checks too -------------------------------------------------


def test_node_room_counts_what_fits_on_each_node_not_on_their_sum(catalog: Catalog) -> None:
    us = catalog.us_east
    for index in range(4):
        node(us, f"n{index}", gpus_requested=4)  # 16 GPUs free, four on each node
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    h100x4 = InstanceType.objects.get(slug="gpu-h100x4")
    assert selectors.node_room(region=us, instance_type=h100x8) == 0
    assert selectors.node_room(region=us, instance_type=h100x4) == 4


def test_memory_per_node_bounds_it_too(catalog: Catalog) -> None:
    """docs/catalog.md: four nodes of 1750 GiB hold 28 instances of 220 GiB, where their sum says 31."""
    us = catalog.us_east
    fat = InstanceType.objects.create(
        slug="fat-h100x1",
        name="fat",
        gpu_type=InstanceType.objects.get(slug="gpu-h100x1").gpu_type,
        gpu_count=1,
        vcpu=8,
        memory_gib=220,
        price_per_hour="3.0000",
    )
    for index in range(4):
        node(us, f"n{index}")
    assert selectors.node_room(region=us, instance_type=fat) == 28


def test_no_recent_report_no_node_figure(catalog: Catalog) -> None:
    us = catalog.us_east
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    assert selectors.node_room(region=us, instance_type=h100x8) is None  # the pool's figure alone
    node(us, "old", observed_at=timezone.now() - selectors.CAPACITY_STALE_AFTER - timedelta(seconds=1))
    assert selectors.node_room(region=us, instance_type=h100x8) is None
    assert selectors.whole_nodes_free(region=us, instance_type=h100x8) == {}  # nor a whole node
    node(us, "cordoned", state=NodeState.CORDONED)
    assert selectors.node_room(region=us, instance_type=h100x8) == 0
    assert selectors.node_room(region=us, instance_type=InstanceType.objects.get(slug="cpu-4x")) is None


def test_availability_is_the_smaller_of_the_pool_and_the_nodes(catalog: Catalog) -> None:
    us = catalog.us_east
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    h100x1 = InstanceType.objects.get(slug="gpu-h100x1")
    before = selectors.availability()
    assert before[(us.pk, h100x8.pk)] == 4  # the seeded pool: four 8-GPU nodes
    for index in range(4):
        node(us, f"n{index}", gpus_requested=1)  # somebody else's pod on each
    after = selectors.availability()
    assert after[(us.pk, h100x8.pk)] == 0
    assert after[(us.pk, h100x1.pk)] == min(before[(us.pk, h100x1.pk)], 28)
