"""The volume API and its services, in regions without a cluster (changes complete at once; the sandbox
tests in test_volumes_sandbox.py run the same against Kubernetes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from apps.catalog.models import Region
from apps.instances import services as instance_services
from apps.instances.models import Instance
from apps.instances.states import Observation
from apps.quotas.services import quota_for
from apps.storage import services as storage_services
from apps.storage.models import Volume, VolumeEvent
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.instances.helpers import Catalog
from tests.storage.volume_helpers import VolumeApi

pytestmark = pytest.mark.django_db


def error(response: Any) -> dict[str, Any]:
    return response.json()["error"]


def names_volumes(response: Any) -> bool:
    """The error names the launch body's `volumes` (or a field inside it, e.g. volumes.0.mount_path)."""
    return any(key.split(".")[0] == "volumes" for key in error(response)["fields"])


def test_create_shows_the_region_storage_class_access_mode_and_price(owner_api: VolumeApi) -> None:
    with override_settings(VOLUME_PRICE_PER_GIB_HOUR=Decimal("0.0003")):
        created = owner_api.create(name="datasets", size_gib=100)
    assert created["name"] == "datasets" and created["size_gib"] == 100
    assert (created["region"], created["storage_class"]) == ("us-east-1", "sandbox-standard")
    assert (created["access_mode"], created["multi_attach"]) == ("ReadWriteOnce", False)
    assert Decimal(created["price_per_hour"]) == Decimal("0.0300")
    # No cluster in this region: the claim cannot exist, so creation completes at once.
    assert owner_api.volume(created["id"])["state"] == "available"
    listed = owner_api.get("/volumes").json()["results"]
    assert [v["id"] for v in listed] == [created["id"]]


def test_a_read_write_many_class_says_several_instances_may_mount(owner_api: VolumeApi) -> None:
    Region.objects.filter(slug="us-east-1").update(storage_access_mode="ReadWriteMany")
    created = owner_api.create()
    assert (created["access_mode"], created["multi_attach"]) == ("ReadWriteMany", True)
    first = owner_api.launch((created["id"], "/data"), name="one")
    second = owner_api.launch((created["id"], "/shared"), name="two")
    assert (first.status_code, second.status_code) == (201, 201)
    attached = owner_api.volume(created["id"])["attachments"]
    assert sorted(a["instance_name"] for a in attached) == ["one", "two"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad_Name", "size_gib": 10, "region": "us-east-1"}, "name"),
        ({"name": "ok", "size_gib": 0, "region": "us-east-1"}, "size_gib"),
        ({"name": "ok", "size_gib": 70000, "region": "us-east-1"}, "size_gib"),
        ({"name": "ok", "size_gib": "ten", "region": "us-east-1"}, "size_gib"),
        ({"name": "ok", "size_gib": 10, "region": "mars-1"}, "region"),
        ({"name": "ok", "size_gib": 10}, "region"),
        ({"name": "ok", "size_gib": 10, "region": "us-east-1", "class": "fast"}, "class"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    owner_api: VolumeApi, body: dict[str, Any], field: str
) -> None:
    response = owner_api.post("/volumes", body)
    assert response.status_code == 400, response.json()
    assert field in error(response)["fields"]
    assert not Volume.objects.exists()


def test_names_are_unique_per_tenant_and_region_among_live_volumes(owner_api: VolumeApi) -> None:
    first = owner_api.create(name="data")
    again = owner_api.post("/volumes", {"name": "data", "size_gib": 5, "region": "us-east-1"})
    assert again.status_code == 400 and "name" in error(again)["fields"]
    assert owner_api.create(name="data", region="eu-west-1")["region"] == "eu-west-1"
    assert owner_api.delete(f"/volumes/{first['id']}").status_code == 202
    assert owner_api.create(name="data")["id"] != first["id"]  # the deleted one frees its name


def test_create_honours_the_idempotency_key(owner_api: VolumeApi) -> None:
    body = {"name": "once", "size_gib": 10, "region": "us-east-1"}
    headers = {"Idempotency-Key": "vol-1"}
    first = owner_api.post("/volumes", body, headers=headers)
    second = owner_api.post("/volumes", body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] == second.json()["id"]
    assert Volume.objects.count() == 1


def test_another_tenants_volume_answers_404(owner_api: VolumeApi, make_actor: Callable[..., Actor]) -> None:
    theirs = owner_api.create()
    other = VolumeApi(make_actor(Role.OWNER))
    url = f"/volumes/{theirs['id']}"
    assert other.get(url).status_code == 404
    assert other.patch(url, {"size_gib": 500}).status_code == 404
    assert other.delete(url).status_code == 404
    assert other.get("/volumes").json()["results"] == []
    assert owner_api.volume(theirs["id"])["size_gib"] == 10  # untouched
    # Nor can another tenant mount it: it does not exist for them.
    launched = other.launch((theirs["id"], "/data"))
    assert launched.status_code == 400 and names_volumes(launched)


def test_volumes_only_grow(owner_api: VolumeApi) -> None:
    volume = owner_api.create(size_gib=50)
    url = f"/volumes/{volume['id']}"
    smaller = owner_api.patch(url, {"size_gib": 40})
    assert smaller.status_code == 400 and "size_gib" in error(smaller)["fields"]
    assert owner_api.patch(url, {"size_gib": 50}).json()["size_gib"] == 50  # the same size is no change
    grown = owner_api.patch(url, {"size_gib": 80, "name": "bigger"})
    assert grown.status_code == 200, grown.json()
    assert (grown.json()["size_gib"], grown.json()["name"]) == (80, "bigger")
    assert owner_api.volume(volume["id"])["state"] == "available"
    sizes = list(VolumeEvent.objects.filter(volume_id=volume["id"]).values_list("name", "size_gib"))
    assert ("created", 50) in sizes and ("resized", 80) in sizes
    empty = owner_api.patch(url, {})
    assert empty.status_code == 400


def test_a_class_that_cannot_expand_refuses_to_grow(owner_api: VolumeApi) -> None:
    Region.objects.filter(slug="us-east-1").update(storage_expandable=False)
    volume = owner_api.create(size_gib=10)
    response = owner_api.patch(f"/volumes/{volume['id']}", {"size_gib": 20})
    assert response.status_code == 400 and "size_gib" in error(response)["fields"]


def test_quota_counts_total_volume_gib(owner_api: VolumeApi) -> None:
    quota = quota_for(owner_api.actor.tenant)
    quota.max_volume_gib = 100
    quota.save()
    first = owner_api.create(name="a", size_gib=80)
    refused = owner_api.post("/volumes", {"name": "b", "size_gib": 30, "region": "eu-west-1"})
    assert refused.status_code == 409
    assert error(refused)["code"] == "quota_exceeded"
    assert error(refused)["details"] == {"resource": "volume_gib", "limit": 100, "used": 80, "requested": 30}
    grow = owner_api.patch(f"/volumes/{first['id']}", {"size_gib": 110})
    assert grow.status_code == 409 and error(grow)["details"]["requested"] == 30
    assert owner_api.patch(f"/volumes/{first['id']}", {"size_gib": 100}).status_code == 200
    limits = {row["resource"]: row for row in owner_api.get("/quotas").json()["limits"]}
    assert (limits["volume_gib"]["limit"], limits["volume_gib"]["used"]) == (100, 100)
    # A deleted volume gives its GiB back.
    owner_api.delete(f"/volumes/{first['id']}")
    assert owner_api.create(name="b", size_gib=30)["size_gib"] == 30


def test_launch_attaches_volumes_and_the_instance_shows_them(owner_api: VolumeApi) -> None:
    data, scratch = owner_api.create(name="data"), owner_api.create(name="scratch", size_gib=5)
    response = owner_api.launch((data["id"], "/data"), (scratch["id"], "/home/gpucloud/scratch"))
    assert response.status_code == 201, response.json()
    shown = response.json()["volumes"]
    assert [(v["volume_id"], v["mount_path"], v["access_mode"]) for v in shown] == [
        (data["id"], "/data", "ReadWriteOnce"),
        (scratch["id"], "/home/gpucloud/scratch", "ReadWriteOnce"),
    ]
    assert owner_api.volume(data["id"])["state"] == "in_use"
    assert owner_api.volume(data["id"])["attachments"][0]["mount_path"] == "/data"


@pytest.mark.parametrize(
    "mount_path",
    ["/", "data", "/etc", "/etc/gpucloud", "/usr/local/lib", "/proc/x", "/data/../etc", "/data/", "/a b", ""],
)
def test_launch_refuses_bad_mount_paths_naming_volumes(owner_api: VolumeApi, mount_path: str) -> None:
    volume = owner_api.create()
    response = owner_api.launch((volume["id"], mount_path))
    assert response.status_code == 400, response.json()
    assert names_volumes(response)
    assert not Instance.objects.exists()


def test_launch_refuses_unknown_other_region_and_repeated_volumes(owner_api: VolumeApi) -> None:
    here, there = owner_api.create(name="here"), owner_api.create(name="there", region="eu-west-1")
    cases = [
        [(str(uuid.uuid4()), "/data")],
        [(there["id"], "/data")],
        [(here["id"], "/data"), (here["id"], "/other")],
        [(here["id"], "/data")] * 1 + [(there["id"], "/data")],
    ]
    for mounts in cases:
        response = owner_api.launch(*mounts)
        assert response.status_code == 400, (mounts, response.json())
        assert names_volumes(response)
    malformed = owner_api.post(
        "/instances",
        {"instance_type": "cpu-4x", "region": "us-east-1", "image": "pytorch", "volumes": [{"volume_id": 1}]},
    )
    assert malformed.status_code == 400 and names_volumes(malformed)
    assert not Instance.objects.exists()


def test_a_read_write_once_volume_is_attached_to_one_live_instance(owner_api: VolumeApi) -> None:
    volume = owner_api.create()
    first = owner_api.launch((volume["id"], "/data"), name="first")
    assert first.status_code == 201
    second = owner_api.launch((volume["id"], "/data"), name="second")
    assert second.status_code == 409
    assert error(second)["code"] == "volume_in_use"
    assert error(second)["details"]["instance_ids"] == [first.json()["id"]]
    # A stopped instance still holds it.
    owner_api.post(f"/instances/{first.json()['id']}/stop")
    assert owner_api.launch((volume["id"], "/data"), name="second").status_code == 409
    # Terminated, it lets go: the volume is available and attachable again.
    assert owner_api.delete(f"/instances/{first.json()['id']}").status_code == 202
    assert owner_api.volume(volume["id"])["state"] == "available"
    assert owner_api.launch((volume["id"], "/data"), name="second").status_code == 201


def test_delete_is_refused_while_attached_and_terminate_keeps_the_volume(owner_api: VolumeApi) -> None:
    volume = owner_api.create()
    instance = owner_api.launch((volume["id"], "/data")).json()
    refused = owner_api.delete(f"/volumes/{volume['id']}")
    assert refused.status_code == 409
    assert error(refused)["code"] == "volume_attached"
    assert error(refused)["details"]["instance_ids"] == [instance["id"]]
    assert owner_api.delete(f"/instances/{instance['id']}").status_code == 202
    assert owner_api.volume(volume["id"])["state"] == "available"  # kept by default
    deleted = owner_api.delete(f"/volumes/{volume['id']}")
    assert deleted.status_code == 202
    shown = owner_api.volume(volume["id"])
    assert shown["state"] == "deleted" and shown["deleted_at"]
    assert owner_api.get("/volumes").json()["results"] == []
    assert len(owner_api.get("/volumes?include_deleted=true").json()["results"]) == 1
    assert owner_api.delete(f"/volumes/{volume['id']}").status_code == 202  # asked twice, same answer


def test_terminate_with_delete_volumes_deletes_them(owner_api: VolumeApi) -> None:
    volume = owner_api.create()
    instance = owner_api.launch((volume["id"], "/data")).json()
    bad = owner_api.delete(f"/instances/{instance['id']}?delete_volumes=perhaps")
    assert bad.status_code == 400 and "delete_volumes" in error(bad)["fields"]
    assert owner_api.delete(f"/instances/{instance['id']}?delete_volumes=true").status_code == 202
    assert owner_api.volume(volume["id"])["state"] == "deleted"
    names = list(VolumeEvent.objects.filter(volume_id=volume["id"]).values_list("name", flat=True))
    assert "delete_requested" in names


def test_roles_and_scopes(catalog: Catalog, make_actor: Callable[..., Actor]) -> None:
    owner = VolumeApi(make_actor(Role.OWNER))
    volume = owner.create()
    tenant = owner.actor.tenant
    viewer = VolumeApi(make_actor(Role.VIEWER, tenant=tenant))
    assert viewer.get(f"/volumes/{volume['id']}").status_code == 200
    assert viewer.post("/volumes", {"name": "v", "size_gib": 1, "region": "us-east-1"}).status_code == 403
    assert viewer.delete(f"/volumes/{volume['id']}").status_code == 403
    billing = VolumeApi(make_actor(Role.BILLING, tenant=tenant))
    assert billing.get("/volumes").status_code == 403
    member = VolumeApi(make_actor(Role.MEMBER, tenant=tenant, token_scopes=("storage:read",)))
    assert member.get("/volumes").status_code == 200
    assert member.patch(f"/volumes/{volume['id']}", {"size_gib": 20}).status_code == 403
    writer = VolumeApi(make_actor(Role.MEMBER, tenant=tenant, token_scopes=("storage:write",)))
    assert writer.patch(f"/volumes/{volume['id']}", {"size_gib": 20}).status_code == 200


def _running(instance_id: str) -> None:
    """Without a cluster nothing reports the pod: say it is ready, as the operator would."""
    instance_services.instance_observe(instance_id=instance_id, observation=Observation.POD_READY)
    assert Instance.objects.get(pk=instance_id).state == "running"


def test_start_is_refused_while_an_attached_volume_is_failed(owner_api: VolumeApi) -> None:
    kept, lost = owner_api.create(name="kept"), owner_api.create(name="lost")
    instance = owner_api.launch((kept["id"], "/kept"), (lost["id"], "/lost")).json()
    _running(instance["id"])
    assert owner_api.post(f"/instances/{instance['id']}/stop").status_code == 202
    assert Instance.objects.get(pk=instance["id"]).state == "stopped"
    storage_services.volume_observe(
        volume_id=lost["id"], observation="lost", message="The claim was deleted."
    )

    # Without the refusal the start would be accepted and the pod would wait for the lost claim forever.
    refused = owner_api.post(f"/instances/{instance['id']}/start")
    assert refused.status_code == 409
    assert error(refused)["code"] == "invalid_state"
    assert "'lost'" in error(refused)["message"] and "failed" in error(refused)["message"]
    assert error(refused)["details"] == {"volume_id": lost["id"], "state": "failed"}
    assert Instance.objects.get(pk=instance["id"]).state == "stopped"

    # Terminating keeps the healthy volume; the failed one can then be deleted.
    assert owner_api.delete(f"/instances/{instance['id']}").status_code == 202
    assert owner_api.volume(kept["id"])["state"] == "available"
    assert owner_api.delete(f"/volumes/{lost['id']}").status_code == 202


def test_restart_is_refused_while_an_attached_volume_is_failed(owner_api: VolumeApi) -> None:
    volume = owner_api.create()
    instance = owner_api.launch((volume["id"], "/data")).json()
    _running(instance["id"])
    storage_services.volume_observe(volume_id=volume["id"], observation="lost", message="Lost.")
    refused = owner_api.post(f"/instances/{instance['id']}/restart")
    assert (refused.status_code, error(refused)["code"]) == (409, "invalid_state")
    assert error(refused)["details"]["volume_id"] == volume["id"]
