"""The launch page: region -> GPU type -> instance type with live availability and price, images, SSH keys,
name and auto-stop; launches through instance_launch and shows its refusals (quota, capacity, funds, the
tenant's status, bad input) on the form; the button is disabled with the reason when no launch can work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.accounts import services as account_services
from apps.audit.models import AuditEvent
from apps.catalog.models import GpuType, ImagePolicy, InstanceType, RegionCapacity
from apps.catalog.selectors import available_count
from apps.instances.models import Instance
from apps.quotas.models import GpuQuota
from apps.quotas.services import quota_for
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.console.helpers import client_for, ed25519_public_key, make_instance, page
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_actor: Callable[..., Any], catalog: Any) -> Any:
    return make_actor(Role.OWNER)


def _post(client: Client, owner: Any, **fields: Any) -> Any:
    data = {"region": "us-east-1", "instance_type": "gpu-h100x1", "image": "pytorch", **fields}
    return client.post(page("launch", owner.tenant), {k: v for k, v in data.items() if v is not None})


def test_the_form_offers_the_regions_types_with_availability_and_price(owner: Any) -> None:
    response = client_for(owner.user).get(page("launch", owner.tenant))

    assert response.status_code == 200
    assert response.context["region"].slug == "us-east-1"
    types = {row["type"].slug: row for row in response.context["types"]}
    assert "gpu-h100x1" in types and "gpu-l40sx1" not in types  # no L40S in us-east-1
    for slug in ("gpu-h100x1", "gpu-h100x8"):
        live = available_count(region=response.context["region"], instance_type=types[slug]["type"])
        assert types[slug]["available"] == live > 0
    html = response.content.decode()
    assert "$2.49" in html and 'data-price="$2.49"' in html
    assert 'id="estimate"' in html
    assert {i.slug for i in response.context["images"]} == {"cuda-12", "pytorch", "jupyter"}
    # HTMX: changing the region reloads the region-dependent options.
    assert f'hx-get="{page("launch_options", owner.tenant)}"' in html
    assert 'hx-trigger="change"' in html
    assert 'name="custom_image"' not in html  # the image policy allows none
    assert 'id="launch-button"' in html and "launch-blocked" not in html


def test_the_options_partial_follows_the_region_and_gpu_type(owner: Any) -> None:
    client = client_for(owner.user)
    url = page("launch_options", owner.tenant)

    eu = client.get(url, {"region": "eu-west-1"}, headers={"HX-Request": "true"})
    assert eu.status_code == 200
    assert "<html" not in eu.content.decode()
    assert {row["type"].slug for row in eu.context["types"]} >= {"gpu-l40sx1", "gpu-l40sx4", "gpu-h100x1"}

    l40s = client.get(url, {"region": "eu-west-1", "gpu_type": "l40s-48gb"})
    assert {row["type"].slug for row in l40s.context["types"]} == {"gpu-l40sx1", "gpu-l40sx4"}
    assert "gpu-h100x1" not in l40s.content.decode()


def test_availability_is_live(owner: Any, catalog: Any) -> None:
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type__slug="h100-80gb").update(gpus=2)
    make_instance(owner.tenant, created_by=owner.user, instance_type="gpu-h100x2")

    response = client_for(owner.user).get(page("launch", owner.tenant))

    types = {row["type"].slug: row for row in response.context["types"]}
    assert types["gpu-h100x1"]["available"] == 0
    html = response.content.decode()
    assert "None available" in html
    assert 'id="it-gpu-h100x1" value="gpu-h100x1" data-price="$2.49" disabled' in html


def test_a_launch_creates_the_instance_and_shows_it(owner: Any) -> None:
    key = account_services.ssh_key_create(
        actor=owner.user, tenant=owner.tenant, name="laptop", public_key=ed25519_public_key()
    )
    client = client_for(owner.user)

    response = _post(client, owner, name="trainer", ssh_key_ids=[str(key.pk)], auto_stop_after="3600")

    instance = Instance.objects.get(tenant=owner.tenant, name="trainer")
    assert response.status_code == 302
    assert response.url == page("instance_detail", owner.tenant, instance.pk)
    assert instance.instance_type.slug == "gpu-h100x1"
    assert instance.auto_stop_after == 3600
    assert list(instance.ssh_keys.all()) == [key]
    assert AuditEvent.objects.get(action="instance.launch", tenant=owner.tenant).via == "console"
    assert "Launching trainer" in client.get(response.url).content.decode()


def test_a_launch_without_a_name_gets_one(owner: Any) -> None:
    response = _post(client_for(owner.user), owner, name="")
    assert response.status_code == 302
    assert Instance.objects.get(tenant=owner.tenant).name.startswith("gpu-h100x1-")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "Not_Valid"}, "name", "lowercase letters"),
        ({"ssh_key_ids": ["00000000-0000-4000-8000-000000000000"]}, "ssh_key_ids", "Unknown SSH key"),
        ({"ssh_key_ids": ["not-a-uuid"]}, "ssh_key_ids", "valid UUID"),
        ({"auto_stop_after": "10"}, "auto_stop_after", "greater than or equal to 60"),
        ({"image": "no-such-image"}, "image", "custom images are not allowed"),
        ({"instance_type": "gpu-z9000"}, "instance_type", "Unknown instance type"),
    ],
)
def test_bad_input_is_shown_on_its_field(
    owner: Any, fields: dict[str, Any], field: str, message: str
) -> None:
    response = _post(client_for(owner.user), owner, **fields)

    assert response.status_code == 400
    assert any(message in m for m in response.context["field_errors"][field])
    html = response.content.decode()
    assert message in html
    assert 'id="launch-error"' in html
    assert not Instance.objects.exists()


def test_quota_refuses_with_the_reason(owner: Any) -> None:
    quota = quota_for(owner.tenant)
    quota.max_gpus = 1
    quota.save()

    response = _post(client_for(owner.user), owner, instance_type="gpu-h100x2")

    assert response.status_code == 409
    html = response.content.decode()
    assert "quota" in html.lower() and response.context["error"] in html
    assert "GPU" in response.context["error"]
    assert not Instance.objects.exists()
    # The form already warned next to the type.
    types = {row["type"].slug: row for row in response.context["types"]}
    assert types["gpu-h100x2"]["quota_note"].startswith("Over quota: 0 of 1 GPUs")


def test_a_gpu_type_quota_refuses_early_with_the_reason(owner: Any, catalog: Any) -> None:
    """A per-GPU-type limit (GpuQuota, overall) warns next to the type and disables it before the service
    refuses the launch (apps.quotas.services.admit)."""
    h100 = GpuType.objects.get(slug="h100-80gb")
    GpuQuota.objects.create(tenant=owner.tenant, gpu_type=h100, max_gpus=1)
    client = client_for(owner.user)

    response = client.get(page("launch", owner.tenant))
    html = response.content.decode()

    types = {row["type"].slug: row for row in response.context["types"]}
    note = "Over quota: 0 of 1 h100-80gb GPUs in use, this type needs 2."
    assert types["gpu-h100x2"]["quota_note"] == note
    assert types["gpu-h100x1"]["quota_note"] == ""  # one H100 fits
    assert note in html
    assert 'id="it-gpu-h100x2" value="gpu-h100x2" data-price="$4.98" disabled' in html
    assert response.context["selected_type"].slug != "gpu-h100x2"

    refused = _post(client, owner, instance_type="gpu-h100x2")
    assert refused.status_code == 409
    assert "Quota exceeded for h100-80gb GPUs" in refused.context["error"]
    assert not Instance.objects.exists()


def test_a_gpu_type_quota_of_another_region_does_not_refuse_here(owner: Any, catalog: Any) -> None:
    h100 = GpuType.objects.get(slug="h100-80gb")
    GpuQuota.objects.create(tenant=owner.tenant, gpu_type=h100, region=catalog.eu_west, max_gpus=0)
    client = client_for(owner.user)

    here = client.get(page("launch", owner.tenant), {"region": "us-east-1"})
    there = client.get(page("launch_options", owner.tenant), {"region": "eu-west-1"})

    assert all(row["quota_note"] == "" for row in here.context["types"])
    eu = {row["type"].slug: row for row in there.context["types"]}
    note = "Over quota: 0 of 0 h100-80gb GPUs in eu-west-1 in use, this type needs 1."
    assert eu["gpu-h100x1"]["quota_note"] == note
    assert eu["gpu-l40sx1"]["quota_note"] == ""  # another GPU type


def test_no_capacity_refuses_with_the_reason(owner: Any, catalog: Any) -> None:
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type__slug="h100-80gb").update(gpus=0)

    response = _post(client_for(owner.user), owner)

    assert response.status_code == 409
    assert "No capacity for gpu-h100x1 in us-east-1" in response.content.decode()
    assert not Instance.objects.exists()


def test_out_of_funds_disables_the_button_with_the_reason(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    broke = make_actor(Role.OWNER, tenant=TenantFactory(credit=0))
    client = client_for(broke.user)

    html = client.get(page("launch", broke.tenant)).content.decode()
    assert 'id="launch-button" disabled aria-describedby="launch-blocked"' in html
    assert "prepaid balance is used up" in html

    response = _post(client, broke)
    assert response.status_code == 402
    assert "prepaid balance is used up" in response.content.decode()
    assert not Instance.objects.exists()


def test_a_suspended_tenant_cannot_launch_and_is_told_why(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    tenant = TenantFactory(status=TenantStatus.SUSPENDED, status_reason="Abuse report #12")
    owner = make_actor(Role.OWNER, tenant=tenant)
    client = client_for(owner.user)

    html = client.get(page("launch", tenant)).content.decode()
    assert 'id="launch-button" disabled' in html
    assert "This tenant is suspended and cannot launch instances. Reason: Abuse report #12" in html

    response = _post(client, owner)
    assert response.status_code == 403
    assert "suspended" in response.content.decode()
    assert not Instance.objects.exists()


def test_custom_images_only_when_the_policy_allows(owner: Any) -> None:
    policy = ImagePolicy.current()
    policy.allow_custom_images, policy.allowed_registries = True, ["ghcr.io"]
    policy.save()
    client = client_for(owner.user)

    html = client.get(page("launch", owner.tenant)).content.decode()
    assert 'name="custom_image"' in html and "ghcr.io" in html

    refused = _post(client, owner, custom_image="docker.io/library/ubuntu:24.04")
    assert refused.status_code == 400
    assert "not allowed" in " ".join(refused.context["field_errors"]["image"])

    response = _post(client, owner, custom_image="ghcr.io/acme/trainer:1.0")
    assert response.status_code == 302
    assert Instance.objects.get().image_reference == "ghcr.io/acme/trainer:1.0"


def test_no_custom_image_field_when_no_registry_is_allowed(owner: Any) -> None:
    policy = ImagePolicy.current()
    policy.allow_custom_images, policy.allowed_registries = True, []
    policy.save()
    client = client_for(owner.user)

    html = client.get(page("launch", owner.tenant)).content.decode()
    assert 'name="custom_image"' not in html
    refused = _post(client, owner, custom_image="ghcr.io/acme/trainer:1.0")
    assert refused.status_code == 400
    assert not Instance.objects.exists()


def test_viewers_cannot_launch(make_actor: Callable[..., Any], owner: Any) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = client_for(viewer.user)

    page_response = client.get(page("launch", owner.tenant))
    assert page_response.status_code == 403
    assert "does not allow &#x27;instances.write&#x27;" in page_response.content.decode()
    assert _post(client, viewer).status_code == 403
    assert not Instance.objects.exists()


def test_another_tenants_launch_page_is_404(make_actor: Callable[..., Any], owner: Any) -> None:
    stranger = make_actor(Role.OWNER)
    assert client_for(stranger.user).get(page("launch", owner.tenant)).status_code == 404
    assert _post(client_for(stranger.user), owner).status_code == 404
    assert not Instance.objects.exists()


def test_the_launch_form_needs_csrf(owner: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(owner.user)
    assert _post(strict, owner).status_code == 403
    assert not Instance.objects.exists()
    assert InstanceType.objects.exists()
