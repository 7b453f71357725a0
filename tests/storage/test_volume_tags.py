"""Tags on volumes through the API: set at creation, changed by PATCH (a merge patch, with a rename or a
resize in one transaction), refused with a 400 naming the field and the tag, audited."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.storage.models import Volume
from tests.storage.volume_helpers import VolumeApi
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


def test_a_volume_created_with_tags_shows_them(owner_api: VolumeApi) -> None:
    response = owner_api.post(
        "/volumes", {"name": "data", "size_gib": 10, "region": "us-east-1", "tags": {"Team": "ml"}}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["tags"] == {"team": "ml"}
    assert owner_api.volume(response.json()["id"])["tags"] == {"team": "ml"}
    assert [v["tags"] for v in owner_api.get("/volumes").json()["results"]] == [{"team": "ml"}]
    created = AuditEvent.objects.get(action="volume.create", target_id=response.json()["id"])
    assert created.changes["tags"] == {"team": "ml"}


def test_a_volume_with_bad_tags_is_refused_and_not_created(owner_api: VolumeApi) -> None:
    body = {"name": "data", "size_gib": 10, "region": "us-east-1", "tags": {"gpucloud": "x"}}
    error = assert_error(owner_api.post("/volumes", body), 400, "invalid", field="tags")
    assert "'gpucloud'" in error["fields"]["tags"][0]
    assert not Volume.objects.filter(tenant=owner_api.actor.tenant).exists()


def test_patch_merges_tags_and_audits_them(owner_api: VolumeApi) -> None:
    volume = owner_api.create()
    owner_api.patch(f"/volumes/{volume['id']}", {"tags": {"team": "ml", "old": "1"}})
    response = owner_api.patch(f"/volumes/{volume['id']}", {"tags": {"old": None, "env": "dev"}})
    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == {"env": "dev", "team": "ml"}
    changes = [
        e.changes["tags"]
        for e in AuditEvent.objects.filter(action="volume.tags", target_id=volume["id"]).order_by("pk")
    ]
    assert changes == [
        {"from": {}, "to": {"old": "1", "team": "ml"}},
        {"from": {"old": "1", "team": "ml"}, "to": {"env": "dev", "team": "ml"}},
    ]


def test_a_patch_with_a_bad_tag_renames_nothing(owner_api: VolumeApi) -> None:
    volume = owner_api.create(name="keep")
    response = owner_api.patch(f"/volumes/{volume['id']}", {"name": "renamed", "tags": {"a": 1}})
    assert_error(response, 400, field="tags")
    assert owner_api.volume(volume["id"])["name"] == "keep"


def test_another_tenants_volume_is_a_404(owner_api: VolumeApi, make_actor) -> None:
    volume = owner_api.create()
    stranger = VolumeApi(make_actor())
    assert_error(stranger.patch(f"/volumes/{volume['id']}", {"tags": {"team": "x"}}), 404, "not_found")
    assert Volume.objects.get(pk=volume["id"]).tags == {}


def test_a_deleted_volumes_tags_do_not_change(owner_api: VolumeApi) -> None:
    volume = owner_api.create()
    Volume.objects.filter(pk=volume["id"]).update(state="deleted")
    response = owner_api.patch(f"/volumes/{volume['id']}", {"tags": {"team": "x"}})
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
