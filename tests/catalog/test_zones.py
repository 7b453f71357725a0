"""Availability zones in the catalog (docs/networking.md "Zones"): a region's zones are its nodes'
`topology.kubernetes.io/zone` values as the operator last saw them, and availability is told per zone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.catalog import selectors
from apps.catalog.models import InstanceType, NodeState
from apps.core.errors import InvalidInput
from tests.support.factories import Catalog, region_node

pytestmark = pytest.mark.django_db


def test_a_regions_zones_are_its_nodes_zones_whatever_their_state(catalog: Catalog) -> None:
    us, eu = catalog.us_east, catalog.eu_west
    region_node(us, "a0", zone="us-east-1b")
    region_node(us, "a1", zone="us-east-1a", state=NodeState.NOT_READY)  # down, still a zone
    region_node(us, "a2", zone="")  # unlabelled: no zone
    region_node(us, "old", zone="us-east-1z", observed_at=timezone.now() - timedelta(hours=1))  # gone
    region_node(eu, "e0", zone="eu-west-1a")

    assert selectors.region_zones() == {us.pk: ["us-east-1a", "us-east-1b"], eu.pk: ["eu-west-1a"]}
    assert selectors.zones_of(us) == ["us-east-1a", "us-east-1b"]


def test_a_zone_is_checked_against_the_regions_zones(catalog: Catalog) -> None:
    us, eu = catalog.us_east, catalog.eu_west
    region_node(us, "a0", zone="us-east-1a")

    assert selectors.check_zone(us, "us-east-1a") == "us-east-1a"
    assert selectors.check_zone(us, None) == selectors.check_zone(us, "") == ""
    for wrong in ("us-east-1c", 7, ["us-east-1a"]):
        with pytest.raises(InvalidInput) as refused:
            selectors.check_zone(us, wrong)
        assert set(refused.value.fields) == {"zone"}
        assert "us-east-1a" in refused.value.message  # the zones it could have named
    with pytest.raises(InvalidInput) as refused:
        selectors.check_zone(eu, "us-east-1a")  # another region's zone
    assert "no zones" in refused.value.message


def test_availability_per_zone_is_what_fits_on_that_zones_ready_nodes(catalog: Catalog) -> None:
    us = catalog.us_east
    region_node(us, "a0", zone="us-east-1a")
    region_node(us, "a1", zone="us-east-1a", gpus_requested=6)
    region_node(us, "b0", zone="us-east-1b", gpus_requested=8)
    region_node(us, "b1", zone="us-east-1b", state=NodeState.NOT_READY)
    h100x1 = InstanceType.objects.get(slug="gpu-h100x1")
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")

    zones = selectors.availability_by_zone()
    # a0: 7 (1750 GiB of memory holds seven 220 GiB instances), a1: 2 (GPUs left); b: none ready and free.
    assert zones[(us.pk, h100x1.pk)] == {"us-east-1a": 9, "us-east-1b": 0}
    assert zones[(us.pk, h100x8.pk)] == {"us-east-1a": 1, "us-east-1b": 0}
    assert selectors.node_room(region=us, instance_type=h100x1, zone="us-east-1b") == 0
    assert selectors.node_room(region=us, instance_type=h100x1, zone="us-east-1a") == 9
    assert selectors.node_room(region=us, instance_type=h100x1) == 9  # the region's


def test_a_zone_never_offers_more_than_the_region(catalog: Catalog) -> None:
    us = catalog.us_east
    for index in range(3):
        region_node(us, f"a{index}", zone="us-east-1a")
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    regional = selectors.availability()
    regional[(us.pk, h100x8.pk)] = 2  # the pool's own limit, below the three free nodes
    assert selectors.availability_by_zone(regional)[(us.pk, h100x8.pk)] == {"us-east-1a": 2}


def test_cpu_types_count_the_zones_cpu_only_nodes(catalog: Catalog) -> None:
    us = catalog.us_east
    region_node(us, "gpu-a", zone="us-east-1a")  # an H100 machine: no room for a CPU type's pods
    region_node(
        us, "cpu-b", zone="us-east-1b", gpu_type_id=None, gpu_product="", gpu_resource="", gpus_allocatable=0
    )
    cpu = InstanceType.objects.get(slug="cpu-4x")
    zones = selectors.availability_by_zone()
    assert zones[(us.pk, cpu.pk)] == {
        "us-east-1b": min(selectors.availability()[(us.pk, cpu.pk)], 200 // cpu.vcpu)
    }
    assert selectors.node_room(region=us, instance_type=cpu, zone="us-east-1a") == 0


def test_the_api_lists_zones_per_region_and_availability_per_zone(owner: Any, catalog: Catalog) -> None:
    us = catalog.us_east
    region_node(us, "a0", zone="us-east-1a")
    region_node(us, "b0", zone="us-east-1b", gpus_requested=8)
    client = owner.token_client()

    regions = {r["slug"]: r for r in client.get("/api/v1/regions").json()["results"]}
    assert regions["us-east-1"]["zones"] == ["us-east-1a", "us-east-1b"]
    assert regions["eu-west-1"]["zones"] == []

    types = {t["slug"]: t for t in client.get("/api/v1/instance-types?region=us-east-1").json()["results"]}
    [h100x8] = types["gpu-h100x8"]["regions"]
    assert h100x8["zones"] == {"us-east-1a": 1, "us-east-1b": 0}
