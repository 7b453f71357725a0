"""Staff capacity overview (/staff/capacity/): GPUs total, used and free per region and GPU type, and the
nodes with their state, from the rows the operator's capacity pass writes (catalog.RegionNode) and the
instances that hold compute. Anyone but staff gets 404."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from apps.accounts.models import User
from apps.catalog.models import GpuType, NodeState, Region, RegionNode
from apps.catalog.selectors import capacity_overview
from apps.tenants.roles import Role
from tests.conftest import Actor, login_staff
from tests.console.helpers import client_for, make_instance, seed
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/staff/capacity/"
GIB = 1024**3


def test_the_url_is_named() -> None:
    assert reverse("console:staff_capacity") == URL


def make_node(region: Region, name: str, observed_at: datetime | None = None, **fields: Any) -> RegionNode:
    h100 = GpuType.objects.get(slug="h100-80gb")
    values: dict[str, Any] = {
        "gpu_type": h100,
        "gpu_product": h100.product_label,
        "gpu_resource": h100.resource_name,
        "gpus_allocatable": 8,
        "vcpu_allocatable": 200,
        "memory_allocatable_bytes": 1750 * GIB,
        "state": NodeState.READY,
        "zone": f"{region.slug}a",
        "instance_type": "gpu.h100.8x",
        "observed_at": observed_at or timezone.now(),
    }
    values.update(fields)
    return RegionNode.objects.create(region=region, name=name, **values)


@pytest.fixture
def fleet(make_actor: Callable[..., Actor]) -> dict[str, Any]:
    """us-east-1: four H100 nodes (two ready, one cordoned, one not ready), a node of a GPU product the
    catalog lacks, a CPU node whose readiness is unknown; three H100s held by instances. eu-west-1: no
    nodes reported, one H100 held."""
    catalog = seed()
    us = catalog.us_east
    make_node(us, "us-h100-a", gpus_requested=6, gpus_requested_by_instances=2)
    make_node(us, "us-h100-b", gpus_requested=1, block="spine-2", rack="leaf-7")
    make_node(us, "us-h100-c", gpus_requested=8, state=NodeState.CORDONED)
    make_node(
        us, "us-h100-d", state=NodeState.NOT_READY, reason="Ready=False: kubelet stopped posting node status"
    )
    make_node(us, "us-acme-0", gpu_type=None, gpu_product="ACME-X1", gpus_allocatable=4, gpus_requested=1)
    make_node(
        us,
        "us-cpu-0",
        gpu_type=None,
        gpu_product="",
        gpu_resource="",
        gpus_allocatable=0,
        vcpu_allocatable="62",
        vcpu_requested="4.5",
        state=NodeState.UNKNOWN,
        reason="no Ready condition reported",
    )
    owner = make_actor(Role.OWNER)
    make_instance(owner.tenant, created_by=owner.user, instance_type="gpu-h100x2", state="running")
    make_instance(owner.tenant, created_by=owner.user, instance_type="gpu-h100x1", state="pending")
    make_instance(owner.tenant, created_by=owner.user, instance_type="gpu-h100x1", state="stopped")
    make_instance(owner.tenant, created_by=owner.user, instance_type="gpu-a100x1", state="terminated")
    make_instance(owner.tenant, created_by=owner.user, instance_type="gpu-h100x1", region="eu-west-1")
    return {"us": us, "eu": catalog.eu_west, "owner": owner}


def staff_page(user: User) -> Any:
    response = login_staff(Client(), user).get(URL)
    assert response.status_code == 200
    return response


def test_anyone_but_staff_gets_404(fleet: dict[str, Any], staff_user: User) -> None:
    owner = fleet["owner"]
    inactive_staff = login_staff(Client(), UserFactory(is_staff=True, is_active=False))
    for client in (Client(), client_for(owner.user), client_for(UserFactory()), inactive_staff):
        for method in ("get", "post"):  # a POST is a 404 too, not a 405 that would reveal the page
            response = getattr(client, method)(URL)
            assert response.status_code == 404, (method, response.status_code)
            assertNotContains(response, "us-h100-a", status_code=404)
    assert staff_page(staff_user).status_code == 200
    assert login_staff(Client(), staff_user).post(URL).status_code == 405  # a page to read, nothing to post


def test_figures_per_region_and_gpu_type(fleet: dict[str, Any], django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(4):  # regions, GPU types, nodes, held instances: whatever the fleet
        overviews = {o.region.slug: o for o in capacity_overview()}
    us = {row.label: row for row in overviews["us-east-1"].gpu_types}
    assert list(us) == ["ACME-X1 (not in the catalog)", "h100-80gb"]
    h100 = us["h100-80gb"]
    # Total: the two ready H100 nodes (cordoned and not-ready nodes do not count). Instances: running 2 +
    # pending 1 (the stopped and terminated ones hold nothing). Other pods: 6-2 on a, 1 on b.
    assert (h100.nodes, h100.total, h100.used_by_instances, h100.used_by_others, h100.free) == (
        4,
        16,
        3,
        5,
        8,
    )
    assert h100.percent_used == 50
    acme = us["ACME-X1 (not in the catalog)"]
    assert (acme.gpu_type, acme.total, acme.used_by_instances, acme.used_by_others, acme.free) == (
        None,
        4,
        0,
        1,
        3,
    )
    # eu-west-1 reported no nodes: what is held there still shows, against nothing.
    eu = overviews["eu-west-1"]
    assert eu.nodes == [] and eu.observed_at is None and not eu.stale
    [eu_h100] = eu.gpu_types
    assert (eu_h100.label, eu_h100.total, eu_h100.used_by_instances, eu_h100.free) == ("h100-80gb", 0, 1, 0)
    assert eu_h100.percent_used == 100


def test_the_page_shows_the_figures_and_a_usage_bar(fleet: dict[str, Any], staff_user: User) -> None:
    response = staff_page(staff_user)
    body = response.content.decode()
    us_section = body[body.index('id="region-us-east-1"') : body.index('id="region-eu-west-1"')]
    row = us_section[us_section.index('data-gpu-type="h100-80gb"') :]
    row = row[: row.index("</tr>")]
    for cell in (
        '<td data-col="total">16</td>',
        '<td data-col="instances">3</td>',
        '<td data-col="others">5</td>',
        '<td data-col="free">8</td>',
    ):
        assert cell in row
    assert '<progress max="100" value="50"' in row
    assert 'aria-label="h100-80gb in us-east-1: 8 of 16 GPUs used"' in row
    assertContains(response, "ACME-X1 (not in the catalog)")
    assertContains(response, 'aria-current="page">Capacity</a>')  # the staff navigation, here current
    assertContains(
        response, "6 nodes: 2 ready, 1 not ready, 1 cordoned, 1 unknown".replace("2 ready", "3 ready")
    )
    assertContains(response, "No GPU nodes reported and no GPUs held here.", count=0)
    assertContains(response, "The operator has not reported any nodes for this region yet")


def node_row(body: str, name: str) -> str:
    start = body.index(f'data-node="{name}"')
    return body[start : body.index("</tr>", start)]


def test_nodes_are_listed_with_their_state_in_words(fleet: dict[str, Any], staff_user: User) -> None:
    body = staff_page(staff_user).content.decode()
    expected = {
        "us-h100-a": ("ready", "Ready", "6 / 8"),
        "us-h100-c": ("cordoned", "Cordoned", "8 / 8"),
        "us-h100-d": ("not_ready", "Not ready", "0 / 8"),
        "us-acme-0": ("ready", "Ready", "1 / 4"),
        "us-cpu-0": ("unknown", "Unknown", "CPU only"),
    }
    for name, (state, label, gpus) in expected.items():
        row = node_row(body, name)
        assert f'data-state="{state}"' in row
        assert f">{label}</span>" in row  # the state is written out, not only coloured
        assert gpus in row
    assert "(2 by instances)" in node_row(body, "us-h100-a")
    assert "kubelet stopped posting node status" in node_row(body, "us-h100-d")
    assert "4.5 / 62" in node_row(body, "us-cpu-0")
    assert "us-east-1a · gpu.h100.8x" in node_row(body, "us-h100-a")  # no topology labels: zone only
    assert "us-east-1a · spine-2 / leaf-7 · gpu.h100.8x" in node_row(body, "us-h100-b")
    assert 'id="region-us-east-1-stale"' not in body and 'class="error">stale' not in body


def test_data_older_than_a_few_minutes_is_flagged_stale(fleet: dict[str, Any], staff_user: User) -> None:
    old = timezone.now() - timedelta(minutes=10)
    RegionNode.objects.filter(name="us-h100-b").update(observed_at=old)
    response = staff_page(staff_user)
    assertContains(response, 'id="region-us-east-1-stale"')
    body = response.content.decode()
    assert '<strong class="error">stale</strong>' in node_row(body, "us-h100-b")
    assert "stale" not in node_row(body, "us-h100-a")
    overviews = {o.region.slug: o for o in capacity_overview()}
    assert overviews["us-east-1"].stale and overviews["us-east-1"].observed_at == old
    # A fresh pass clears it.
    RegionNode.objects.update(observed_at=timezone.now())
    assertNotContains(staff_page(staff_user), 'id="region-us-east-1-stale"')


def test_no_regions_says_so(staff_user: User) -> None:
    assertContains(staff_page(staff_user), "No regions yet.")
