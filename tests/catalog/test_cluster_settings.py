"""What the catalog says about multi-node clusters (docs/clusters.md, "Region settings"): which instance
types take a whole node, how many nodes a region allows a cluster, and the fabric settings every cluster
node gets."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.catalog.models import InstanceType, Region
from tests.support.factories import Catalog

pytestmark = pytest.mark.django_db


def test_the_seeded_whole_node_types_are_those_that_fill_a_fleet_node(catalog: Catalog) -> None:
    whole = set(InstanceType.objects.filter(whole_node=True).values_list("slug", flat=True))
    assert whole == {"gpu-h100x8", "gpu-a100x8", "gpu-l40sx4"}


def test_the_catalog_api_shows_them_and_each_region_s_cluster_size_limit(
    owner: Any, catalog: Catalog
) -> None:
    Region.objects.filter(slug="eu-west-1").update(max_cluster_nodes=16)
    client = owner.token_client()
    regions = {r["slug"]: r for r in client.get("/api/v1/regions").json()["results"]}
    assert (regions["us-east-1"]["max_cluster_nodes"], regions["eu-west-1"]["max_cluster_nodes"]) == (64, 16)
    assert "fabric_env" not in regions["us-east-1"]  # the fabric's settings are the operator's, not shown
    types = {t["slug"]: t for t in client.get("/api/v1/instance-types").json()["results"]}
    assert types["gpu-h100x8"]["whole_node"] is True
    assert types["gpu-h100x1"]["whole_node"] is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (
            "fabric_env",
            {"NCCL_SOCKET_IFNAME": "ib0", "NCCL_IB_HCA": "mlx5_0,mlx5_1", "UCX_NET_DEVICES": "mlx5_0:1"},
        ),
        ("fabric_env", {}),
        ("rdma_resources", {"rdma/rdma_shared_device_a": 1, "nvidia.com/hostdev": 8}),
        ("rdma_resources", {}),
    ],
)
def test_fabric_settings_a_region_may_have(catalog: Catalog, field: str, value: Any) -> None:
    region = catalog.us_east
    setattr(region, field, value)
    region.full_clean()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fabric_env", {"nccl_ib_hca": "mlx5"}),  # not an environment variable's name
        ("fabric_env", {"NCCL_IB_HCA": 5}),  # not a string
        ("fabric_env", ["NCCL_IB_HCA=mlx5"]),
        ("rdma_resources", {"rdma_shared_device_a": 1}),  # no domain
        ("rdma_resources", {"rdma/hca": 0}),
        ("rdma_resources", {"rdma/hca": True}),
        ("rdma_resources", {"rdma/hca": "1"}),
        ("max_cluster_nodes", 0),
    ],
)
def test_fabric_settings_a_region_may_not_have(catalog: Catalog, field: str, value: Any) -> None:
    region = catalog.us_east
    setattr(region, field, value)
    with pytest.raises(ValidationError) as refused:
        region.full_clean()
    assert set(refused.value.message_dict) == {field}
