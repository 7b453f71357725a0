"""Availability zones in the console (docs/networking.md): the launch form offers the region's zones with
their availability and launches into the one chosen; volumes are created in a zone and show it; the staff
capacity page sums each zone's nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import NodeState, Region
from apps.instances.models import Instance
from apps.storage.models import Volume
from apps.tenants.roles import Role
from tests.conftest import login_staff
from tests.console.helpers import client_for, cluster_form, page
from tests.support.factories import region_node

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_actor: Callable[..., Any], catalog: Any) -> Any:
    us = Region.objects.get(slug="us-east-1")
    region_node(us, "a0", zone="us-east-1a")
    region_node(us, "b0", zone="us-east-1b", gpus_requested=8)
    region_node(us, "b1", zone="us-east-1b", state=NodeState.NOT_READY)
    return make_actor(Role.OWNER)


def test_the_launch_form_offers_zones_and_launches_into_the_chosen_one(owner: Any) -> None:
    client = client_for(owner.user)
    response = client.get(
        page("launch", owner.tenant), {"region": "us-east-1", "instance_type": "gpu-h100x1"}
    )

    assert [z["name"] for z in response.context["zones"]] == ["us-east-1a", "us-east-1b"]
    html = response.content.decode()
    assert '<option value="us-east-1a">us-east-1a (7 available)</option>' in html
    assert '<option value="us-east-1b">us-east-1b (0 available)</option>' in html

    data = {"region": "us-east-1", "instance_type": "gpu-h100x1", "image": "pytorch", "zone": "us-east-1a"}
    launched = client.post(page("launch", owner.tenant), {**data, "name": "zoned"})
    assert launched.status_code == 302
    assert Instance.objects.get(name="zoned").zone == "us-east-1a"
    refused = client.post(page("launch", owner.tenant), {**data, "name": "full", "zone": "us-east-1b"})
    assert refused.status_code == 409 and "zone us-east-1b" in refused.content.decode()
    assert not Instance.objects.filter(name="full").exists()


def test_a_volume_is_created_in_a_zone_and_shows_it(owner: Any) -> None:
    client = client_for(owner.user)
    form = client.get(page("volumes", owner.tenant)).content.decode()
    assert '<option value="us-east-1b">us-east-1b (us-east-1)</option>' in form

    data = {"name": "data", "region": "us-east-1", "size_gib": "10", "tags": "", "zone": "us-east-1b"}
    response = client.post(page("volumes", owner.tenant), data)

    assert response.status_code == 302
    volume = Volume.objects.get(name="data")
    assert volume.zone == "us-east-1b"
    assert "us-east-1b" in client.get(page("volume_detail", owner.tenant, volume.pk)).content.decode()


def test_the_staff_capacity_page_sums_each_zone(staff_user: Any, owner: Any) -> None:
    response = login_staff(Client(), staff_user).get("/staff/capacity/")

    html = response.content.decode()
    row_b = html.split('data-zone="us-east-1b"')[1].split("</tr>")[0]
    assert "1 / 2" in row_b and "8 / 8" in row_b  # one of two nodes ready; its 8 GPUs taken
    row_a = html.split('data-zone="us-east-1a"')[1].split("</tr>")[0]
    assert "1 / 1" in row_a and "0 / 8" in row_a and "zone down" not in row_a


def test_the_cluster_form_offers_the_regions_zones_and_refuses_an_unknown_one(owner: Any) -> None:
    client = client_for(owner.user)
    options = client.get(page("cluster_create_options", owner.tenant), {"region": "us-east-1"})
    html = options.content.decode()
    assert '<option value="us-east-1a">us-east-1a</option>' in html  # in the part HTMX reloads per region
    none = client.get(page("cluster_create_options", owner.tenant), {"region": "eu-west-1"}).content.decode()
    assert 'name="zone"' not in none  # eu-west-1 reports no nodes here: no zones to offer

    refused = client.post(page("cluster_create", owner.tenant), cluster_form(name="zoned", zone="us-east-1c"))
    assert refused.status_code == 400 and "Unknown zone" in refused.content.decode()
