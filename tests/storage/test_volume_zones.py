"""A volume lives in one availability zone, and an instance using it runs there (docs/networking.md
"Zones"): a zonal disk is reachable from its zone's machines only."""

from __future__ import annotations

import pytest

from apps.instances.models import Instance
from apps.storage.models import Volume
from tests.storage.volume_helpers import VolumeApi
from tests.support.factories import region_node

pytestmark = pytest.mark.django_db

H100 = {"instance_type": "gpu-h100x1"}


@pytest.fixture
def zones(catalog):
    region_node(catalog.us_east, "a0", zone="us-east-1a", gpus_requested=6)  # room for 2
    region_node(catalog.us_east, "b0", zone="us-east-1b")  # room for 8


def _create(api: VolumeApi, name: str, **body) -> dict:
    response = api.post("/volumes", {"name": name, "size_gib": 10, "region": "us-east-1", **body})
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_volume_created_in_a_zone_pins_its_instances_there(owner_api: VolumeApi, zones) -> None:
    volume = _create(owner_api, "in-a", zone="us-east-1a")
    assert volume["zone"] == "us-east-1a"

    response = owner_api.launch((volume["id"], "/data"), name="uses-a", **H100)

    assert response.status_code == 201, response.json()
    assert response.json()["zone"] == "us-east-1a"  # not b, which has more room


def test_a_volume_without_a_zone_takes_the_zone_with_room_at_its_first_launch(owner_api, zones) -> None:
    volume = _create(owner_api, "unplaced")
    assert volume["zone"] == ""

    response = owner_api.launch((volume["id"], "/data"), name="first", **H100)

    assert response.status_code == 201, response.json()
    assert response.json()["zone"] == "us-east-1b"
    assert owner_api.volume(volume["id"])["zone"] == "us-east-1b"  # and stays there after


def test_a_launch_naming_another_zone_than_its_volumes_is_refused(owner_api: VolumeApi, zones) -> None:
    volume = _create(owner_api, "in-b", zone="us-east-1b")

    response = owner_api.launch((volume["id"], "/data"), name="conflict", zone="us-east-1a", **H100)

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error["fields"]) == {"zone"}
    assert "in-b" in error["message"] and "us-east-1b" in error["message"]
    assert not Instance.objects.filter(name="conflict").exists()
    kept = owner_api.volume(volume["id"])
    assert kept["attachments"] == [] and kept["zone"] == "us-east-1b"  # all rolled back


def test_volumes_of_two_zones_cannot_be_mounted_together(owner_api: VolumeApi, zones) -> None:
    a = _create(owner_api, "vol-a", zone="us-east-1a")
    b = _create(owner_api, "vol-b", zone="us-east-1b")

    response = owner_api.launch((a["id"], "/a"), (b["id"], "/b"), name="both", **H100)

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"volumes"}


def test_an_unknown_zone_for_a_volume_is_refused(owner_api: VolumeApi, zones) -> None:
    response = owner_api.post(
        "/volumes", {"name": "x", "size_gib": 10, "region": "us-east-1", "zone": "mars"}
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"zone"}
    assert not Volume.objects.filter(name="x").exists()


def test_without_zones_nothing_is_pinned(owner_api: VolumeApi, catalog) -> None:
    volume = _create(owner_api, "plain")

    response = owner_api.launch((volume["id"], "/data"), name="plain")

    assert response.status_code == 201, response.json()
    assert response.json()["zone"] == ""
    assert owner_api.volume(volume["id"])["zone"] == ""
