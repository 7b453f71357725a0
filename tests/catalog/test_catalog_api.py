"""The catalog API: readable by every signed-in user and every token whatever its scopes."""

from __future__ import annotations

import pytest

from apps.accounts import scopes
from apps.catalog.models import Image, InstanceType, Region, RegionStatus
from apps.instances import services
from apps.instances.services import LaunchRequest
from apps.tenants.roles import Role

pytestmark = pytest.mark.django_db

ENDPOINTS = ["/api/v1/regions", "/api/v1/gpu-types", "/api/v1/instance-types", "/api/v1/images"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_unauthenticated_is_a_401(api_client, catalog, path):
    response = api_client.get(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "token_scopes",
    [(), (scopes.BILLING_READ,), (scopes.INSTANCES_READ,), scopes.ALL_SCOPES],
    ids=["no scopes", "billing:read", "instances:read", "all"],
)
def test_any_token_reads_the_catalog(make_actor, catalog, path, token_scopes):
    actor = make_actor(Role.BILLING, token_scopes=token_scopes)

    response = actor.token_client().get(path)

    assert response.status_code == 200
    assert response.json()["count"] > 0


@pytest.mark.parametrize("path", ENDPOINTS)
def test_any_signed_in_user_reads_the_catalog(make_actor, catalog, path):
    response = make_actor(Role.VIEWER).session_client().get(path)

    assert response.status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_the_catalog_is_read_only(owner, catalog, path):
    assert owner.token_client().post(path, {}, format="json").status_code == 405


def test_regions(owner, catalog):
    body = owner.token_client().get("/api/v1/regions").json()

    assert [r["slug"] for r in body["results"]] == ["us-east-1", "eu-west-1"]
    assert body["results"][0]["status"] == "available"
    assert "kubeconfig" not in str(body)


def test_gpu_types(owner, catalog):
    body = owner.token_client().get("/api/v1/gpu-types").json()
    by_slug = {g["slug"]: g for g in body["results"]}

    assert set(by_slug) == {"h100-80gb", "a100-80gb", "l40s-48gb", "h100-mig-1g10gb", "sandbox-cpu"}
    assert by_slug["h100-80gb"]["product_label"] == "NVIDIA-H100-80GB-HBM3"
    assert by_slug["h100-80gb"]["is_fractional"] is False
    assert by_slug["h100-mig-1g10gb"]["resource_name"] == "nvidia.com/mig-1g.10gb"
    assert by_slug["h100-mig-1g10gb"]["is_fractional"] is True


def types_by_slug(client, query=""):
    body = client.get(f"/api/v1/instance-types{query}").json()
    return {t["slug"]: t for t in body["results"]}


def regions_of(instance_type):
    return {r["region"]: r["available"] for r in instance_type["regions"]}


def test_instance_types_with_prices_and_availability(owner, catalog):
    types = types_by_slug(owner.token_client())

    h100x8 = types["gpu-h100x8"]
    assert h100x8["price_per_hour"] == "19.9200"  # a decimal string, never a float
    assert (h100x8["gpu_type"], h100x8["gpu_count"], h100x8["vcpu"]) == ("h100-80gb", 8, 192)
    assert regions_of(h100x8) == {"us-east-1": 4, "eu-west-1": 2}
    assert regions_of(types["gpu-l40sx4"]) == {"eu-west-1": 4}
    assert regions_of(types["gpu-a100x8"]) == {"us-east-1": 4}
    assert regions_of(types["gpu-h100-mig-1g10gb"]) == {"us-east-1": 7}
    assert types["cpu-4x"]["gpu_type"] is None
    assert regions_of(types["cpu-4x"]) == {"us-east-1": 31, "eu-west-1": 31}


def test_inactive_instance_types_are_not_listed(owner, catalog):
    InstanceType.objects.filter(slug="gpu-a100x1").update(active=False)

    assert "gpu-a100x1" not in types_by_slug(owner.token_client())


def test_filter_by_region(owner, catalog):
    types = types_by_slug(owner.token_client(), "?region=eu-west-1")

    assert "gpu-l40sx1" in types
    assert "gpu-a100x1" not in types  # no A100 in eu-west-1
    assert "gpu-h100-mig-1g10gb" not in types
    assert all(set(regions_of(t)) == {"eu-west-1"} for t in types.values())


def test_filter_by_unknown_region_is_empty(owner, catalog):
    assert types_by_slug(owner.token_client(), "?region=mars-1") == {}


def test_filter_by_gpu_type(owner, catalog):
    types = types_by_slug(owner.token_client(), "?gpu_type=h100-80gb")

    assert set(types) == {"gpu-h100x1", "gpu-h100x2", "gpu-h100x4", "gpu-h100x8"}


def test_a_full_pool_leaves_available_true(owner, catalog):
    client = owner.token_client()
    assert "gpu-h100-mig-1g10gb" in types_by_slug(client, "?available=true")

    for n in range(7):  # one H100 cut into seven slices
        services.instance_launch(
            actor=owner.user,
            tenant=owner.tenant,
            req=LaunchRequest(
                instance_type="gpu-h100-mig-1g10gb", region="us-east-1", image="cuda-12", name=f"m{n}"
            ),
        )

    available = types_by_slug(client, "?available=true")
    assert "gpu-h100-mig-1g10gb" not in available
    assert "gpu-h100x1" in available
    # Still listed without the filter, with nothing available.
    assert regions_of(types_by_slug(client)["gpu-h100-mig-1g10gb"]) == {"us-east-1": 0}


def test_available_true_keeps_only_regions_with_capacity(owner, catalog):
    Region.objects.filter(slug="eu-west-1").update(status=RegionStatus.MAINTENANCE)

    types = types_by_slug(owner.token_client(), "?available=true")

    assert "gpu-l40sx1" not in types  # only in eu-west-1
    assert regions_of(types["gpu-h100x8"]) == {"us-east-1": 4}


def test_a_region_in_maintenance_shows_no_availability(owner, catalog):
    Region.objects.filter(slug="us-east-1").update(status=RegionStatus.MAINTENANCE)

    types = types_by_slug(owner.token_client())

    for instance_type in types.values():
        assert regions_of(instance_type).get("us-east-1", 0) == 0
    assert regions_of(types["gpu-h100x8"])["eu-west-1"] == 2
    region = owner.token_client().get("/api/v1/regions").json()["results"][0]
    assert (region["slug"], region["status"]) == ("us-east-1", "maintenance")


def test_available_false_does_not_filter(owner, catalog):
    client = owner.token_client()

    assert types_by_slug(client, "?available=false") == types_by_slug(client)


def test_filter_by_minimum_gpus(owner, catalog):
    client = owner.token_client()

    assert set(types_by_slug(client, "?min_gpus=8")) == {"gpu-h100x8", "gpu-a100x8"}
    response = client.get("/api/v1/instance-types?min_gpus=many")
    assert response.status_code == 400
    assert "min_gpus" in response.json()["error"]["fields"]


def test_images(owner, catalog):
    body = owner.token_client().get("/api/v1/images").json()
    by_slug = {i["slug"]: i for i in body["results"]}

    assert set(by_slug) == {"cuda-12", "pytorch", "jupyter"}
    assert by_slug["pytorch"]["reference"] == "nvcr.io/nvidia/pytorch:24.08-py3"
    assert sorted(by_slug["pytorch"]["regions"]) == ["eu-west-1", "us-east-1"]


def test_images_filtered_by_region(owner, catalog):
    image = Image.objects.create(slug="eu-only", name="EU only", reference="nvcr.io/nvidia/cuda:12.4.1-base")
    image.regions.add(catalog.eu_west)
    Image.objects.create(slug="retired", name="Retired", reference="x/y:1", active=False)
    client = owner.token_client()

    us = {i["slug"] for i in client.get("/api/v1/images?region=us-east-1").json()["results"]}
    eu = {i["slug"] for i in client.get("/api/v1/images?region=eu-west-1").json()["results"]}

    assert us == {"cuda-12", "pytorch", "jupyter"}
    assert eu == {"cuda-12", "pytorch", "jupyter", "eu-only"}
