"""Tags on instances and clusters through the API: set at launch or creation, changed by PATCH (a merge
patch), refused with a 400 naming the field and the tag, audited; a cluster's nodes carry its tags and
follow its changes, and a node's own tags cannot be changed apart from its cluster's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.response import Response

from apps.audit.models import AuditEvent
from apps.instances.models import Cluster, Instance
from tests.conftest import Actor
from tests.instances.cluster_helpers import cluster_row, room_for_clusters
from tests.instances.helpers import Catalog
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


def test_an_instance_launched_with_tags_shows_them_with_keys_in_lower_case(
    tenant_owner: Actor, launch: Callable[..., Response]
) -> None:
    response = launch(tenant_owner, name="train-1", tags={"Team": "ML", "project": "llm"})
    assert response.status_code == 201, response.json()
    assert response.json()["tags"] == {"project": "llm", "team": "ML"}
    instance = Instance.objects.get(pk=response.json()["id"])
    assert instance.tags == {"team": "ML", "project": "llm"}
    shown = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()
    assert shown["tags"] == {"project": "llm", "team": "ML"}
    listed = tenant_owner.token_client().get(tenant_owner.url("/instances")).json()["results"]
    assert [row["tags"] for row in listed] == [{"project": "llm", "team": "ML"}]
    launched = AuditEvent.objects.get(tenant=tenant_owner.tenant, action="instance.launch")
    assert launched.changes["tags"] == {"team": "ML", "project": "llm"}


def test_a_launch_without_tags_has_none(tenant_owner: Actor, launch: Callable[..., Response]) -> None:
    response = launch(tenant_owner)
    assert response.status_code == 201 and response.json()["tags"] == {}


@pytest.mark.parametrize(
    ("tags", "names"),
    [
        ({"bad key": "x"}, "'bad key'"),
        ({"gpucloud.region": "x"}, "'gpucloud.region'"),
        ({"team": 5}, "'team'"),
        ({"team": "v" * 256}, "'team'"),
        ({f"k{i}": "v" for i in range(51)}, "50"),
        (["team=ml"], "object"),
    ],
)
def test_a_launch_with_bad_tags_is_a_400_naming_the_tag_and_creates_nothing(
    tenant_owner: Actor, launch: Callable[..., Response], tags: Any, names: str
) -> None:
    error = assert_error(launch(tenant_owner, tags=tags), 400, "invalid", field="tags")
    assert names in error["fields"]["tags"][0] and names in error["message"]
    assert not Instance.objects.filter(tenant=tenant_owner.tenant).exists()


def patch(actor: Actor, instance_id: Any, body: Any) -> Response:
    return actor.token_client().patch(actor.url(f"/instances/{instance_id}"), body, format="json")


def test_patch_merges_tags_and_is_audited_with_before_and_after(
    tenant_owner: Actor, launch: Callable[..., Response]
) -> None:
    instance_id = launch(tenant_owner, tags={"team": "ml", "sweep": "7"}).json()["id"]
    response = patch(tenant_owner, instance_id, {"tags": {"team": "research", "sweep": None, "env": "prod"}})
    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == {"env": "prod", "team": "research"}
    assert Instance.objects.get(pk=instance_id).tags == {"env": "prod", "team": "research"}
    audit = AuditEvent.objects.get(tenant=tenant_owner.tenant, action="instance.tags")
    assert audit.target_id == instance_id and audit.actor_user == tenant_owner.user
    assert audit.changes == {
        "tags": {"from": {"team": "ml", "sweep": "7"}, "to": {"env": "prod", "team": "research"}}
    }
    # The same values again change nothing, and write no second audit event.
    assert patch(tenant_owner, instance_id, {"tags": {"team": "research"}}).status_code == 200
    assert AuditEvent.objects.filter(action="instance.tags").count() == 1


def test_patch_with_a_bad_tag_changes_neither_tags_nor_name(
    tenant_owner: Actor, launch: Callable[..., Response]
) -> None:
    instance_id = launch(tenant_owner, name="keep", tags={"team": "ml"}).json()["id"]
    error = assert_error(
        patch(tenant_owner, instance_id, {"name": "renamed", "tags": {"Bad Key": "x"}}), 400, field="tags"
    )
    assert "'Bad Key'" in error["fields"]["tags"][0]
    instance = Instance.objects.get(pk=instance_id)
    assert (instance.name, instance.tags) == ("keep", {"team": "ml"})


def test_patch_past_fifty_tags_is_refused(tenant_owner: Actor, launch: Callable[..., Response]) -> None:
    instance_id = launch(tenant_owner, tags={f"k{i}": "v" for i in range(50)}).json()["id"]
    error = assert_error(patch(tenant_owner, instance_id, {"tags": {"one-more": "v"}}), 400, field="tags")
    assert "At most 50 tags" in error["message"]


def test_patch_of_another_tenants_instance_is_a_404_and_changes_nothing(
    tenant_owner: Actor, launch: Callable[..., Response], make_actor: Callable[..., Actor]
) -> None:
    instance_id = launch(tenant_owner, tags={"team": "ml"}).json()["id"]
    stranger = make_actor()
    assert_error(patch(stranger, instance_id, {"tags": {"team": "mine"}}), 404, "not_found")
    assert Instance.objects.get(pk=instance_id).tags == {"team": "ml"}


def test_a_viewer_cannot_change_tags(
    tenant_owner: Actor, launch: Callable[..., Response], make_actor: Callable[..., Actor]
) -> None:
    instance_id = launch(tenant_owner).json()["id"]
    viewer = make_actor("viewer", tenant=tenant_owner.tenant)
    assert_error(patch(viewer, instance_id, {"tags": {"team": "x"}}), 403)
    assert Instance.objects.get(pk=instance_id).tags == {}


# --- clusters --------------------------------------------------------------------------------------------


@pytest.fixture
def owner(tenant_owner: Actor, catalog: Catalog) -> Actor:
    room_for_clusters(tenant_owner.tenant, catalog.us_east)
    return tenant_owner


def create_cluster(actor: Actor, **fields: Any) -> Response:
    body = {"name": "llm", "instance_type": "gpu-h100x8", "region": "us-east-1", "image": "pytorch"}
    return actor.token_client().post(
        actor.url("/clusters"), {**body, "node_count": 2, **fields}, format="json"
    )


def test_a_clusters_tags_are_its_nodes_tags_at_creation(owner: Actor) -> None:
    response = create_cluster(owner, tags={"Team": "ml"})
    assert response.status_code == 201, response.json()
    assert response.json()["tags"] == {"team": "ml"}
    nodes = Instance.objects.filter(cluster_id=response.json()["id"])
    assert [node.tags for node in nodes] == [{"team": "ml"}, {"team": "ml"}]
    created = AuditEvent.objects.get(tenant=owner.tenant, action="cluster.create")
    assert created.changes["tags"] == {"team": "ml"}


def test_a_cluster_with_bad_tags_is_refused_and_nothing_is_written(owner: Actor) -> None:
    error = assert_error(create_cluster(owner, tags={"team": "a\nb"}), 400, field="tags")
    assert "'team'" in error["message"]
    assert not Cluster.objects.filter(tenant=owner.tenant).exists()
    assert not Instance.objects.filter(tenant=owner.tenant).exists()


def test_a_tag_change_on_the_cluster_goes_to_every_node_in_one_audit_event(owner: Actor) -> None:
    cluster_id = create_cluster(owner, tags={"team": "ml", "sweep": "1"}).json()["id"]
    response = owner.token_client().patch(
        owner.url(f"/clusters/{cluster_id}"), {"tags": {"team": "research", "sweep": None}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == {"team": "research"}
    nodes = list(Instance.objects.filter(cluster_id=cluster_id).order_by("rank"))
    assert [node.tags for node in nodes] == [{"team": "research"}, {"team": "research"}]
    node_view = owner.token_client().get(owner.url(f"/instances/{nodes[0].pk}")).json()
    assert node_view["tags"] == {"team": "research"}
    audit = AuditEvent.objects.get(tenant=owner.tenant, action="cluster.tags")
    assert audit.changes["tags"] == {"from": {"team": "ml", "sweep": "1"}, "to": {"team": "research"}}
    assert sorted(audit.metadata["nodes"]) == sorted(str(node.pk) for node in nodes)


def test_a_nodes_tags_change_only_through_its_cluster(owner: Actor) -> None:
    cluster_id = create_cluster(owner, tags={"team": "ml"}).json()["id"]
    node = Instance.objects.filter(cluster_id=cluster_id).first()
    assert node is not None
    response = patch(owner, node.pk, {"tags": {"team": "other"}})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "cluster_node" and error["message"].endswith("change them on the cluster.")
    assert error["details"] == {"cluster_id": cluster_id}
    node.refresh_from_db()
    assert node.tags == {"team": "ml"}


def test_a_bad_cluster_patch_is_a_400_naming_the_field(owner: Actor) -> None:
    cluster_id = create_cluster(owner).json()["id"]
    url = owner.url(f"/clusters/{cluster_id}")
    assert_error(owner.token_client().patch(url, {"tags": {"x y": "1"}}, format="json"), 400, field="tags")
    assert_error(owner.token_client().patch(url, {"name": "n"}, format="json"), 400, field="name")
    assert_error(owner.token_client().patch(url, {}, format="json"), 400, field="tags")


def test_a_terminated_clusters_tags_do_not_change(owner: Actor) -> None:
    cluster = cluster_row(tenant=owner.tenant, created_by=owner.user, name="done", state="terminated")
    url = owner.url(f"/clusters/{cluster.pk}")
    response = owner.token_client().patch(url, {"tags": {"a": "b"}}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    cluster.refresh_from_db()
    assert cluster.tags == {}


def test_another_tenants_cluster_is_a_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    cluster_id = create_cluster(owner, tags={"team": "ml"}).json()["id"]
    stranger = make_actor()
    response = stranger.token_client().patch(
        stranger.url(f"/clusters/{cluster_id}"), {"tags": {"team": "x"}}, format="json"
    )
    assert_error(response, 404, "not_found")
    assert Cluster.objects.get(pk=cluster_id).tags == {"team": "ml"}
