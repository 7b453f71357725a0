"""Launching into an availability zone (docs/networking.md "Zones"): the zone is checked against the
region's, admission counts the zone's nodes only, and the pod is pinned to the zone by its node label."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.instances.models import Instance
from apps.operator import manifests, specs
from tests.support.factories import region_node

pytestmark = pytest.mark.django_db

ZONE_LABEL = "topology.kubernetes.io/zone"


@pytest.fixture
def two_zones(catalog):
    region_node(catalog.us_east, "a0", zone="us-east-1a")
    region_node(catalog.us_east, "b0", zone="us-east-1b", gpus_requested=8)  # full


def _pod(instance_id) -> dict:
    instance = (
        Instance.objects.select_related("tenant", "region", "gpu_type")
        .prefetch_related("ssh_keys", "volume_attachments")
        .get(pk=instance_id)
    )
    return manifests.make_pod(specs.spec_from_instance(instance))


def test_a_launch_into_a_zone_is_pinned_there(tenant_owner, launch, two_zones):
    response = launch(tenant_owner, name="pinned", zone="us-east-1a")

    assert response.status_code == 201, response.json()
    assert response.json()["zone"] == "us-east-1a"
    pod = _pod(response.json()["id"])
    assert pod["spec"]["nodeSelector"][ZONE_LABEL] == "us-east-1a"
    assert pod["spec"]["nodeSelector"][manifests.GPU_PRODUCT_LABEL]  # the GPU pin stays
    launched = AuditEvent.objects.get(action="instance.launch", target_id=response.json()["id"])
    assert launched.changes["zone"] == "us-east-1a"


def test_a_launch_without_a_zone_runs_in_any(tenant_owner, launch, two_zones):
    response = launch(tenant_owner, name="anywhere")

    assert response.status_code == 201, response.json()
    assert response.json()["zone"] == ""
    assert ZONE_LABEL not in _pod(response.json()["id"])["spec"]["nodeSelector"]


def test_an_unknown_zone_is_refused_naming_the_field(tenant_owner, launch, two_zones):
    response = launch(tenant_owner, name="nowhere", zone="us-east-1c")

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error["fields"]) == {"zone"}
    assert "us-east-1a, us-east-1b" in error["message"]
    assert not Instance.objects.filter(name="nowhere").exists()


def test_a_full_zone_refuses_the_launch_and_writes_nothing(tenant_owner, launch, two_zones):
    response = launch(tenant_owner, name="full", zone="us-east-1b")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_capacity"
    assert error["details"] == {"zone": "us-east-1b"}
    assert "us-east-1b" in error["message"]
    assert not Instance.objects.filter(name="full").exists()
    assert not AuditEvent.objects.filter(action="instance.launch").exists()


def test_a_stopped_instance_pinned_to_a_full_zone_cannot_start(tenant_owner, make_instance, two_zones):
    pinned = make_instance(
        tenant_owner.tenant, created_by=tenant_owner.user, state="stopped", zone="us-east-1b"
    )
    elsewhere = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="stopped")
    client = tenant_owner.token_client()

    refused = client.post(tenant_owner.url(f"/instances/{pinned.pk}/start"))
    started = client.post(tenant_owner.url(f"/instances/{elsewhere.pk}/start"))

    assert refused.status_code == 409 and refused.json()["error"]["details"] == {"zone": "us-east-1b"}
    pinned.refresh_from_db()
    assert pinned.state == "stopped"
    assert started.status_code == 202  # zone a has room, and an unpinned instance goes anywhere
