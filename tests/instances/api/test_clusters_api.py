"""The cluster endpoints (apps/instances/api/clusters.py): create with its nodes, the refusals naming the
field, another tenant's cluster as 404, Idempotency-Key, the actions and their 409, the merged events, the
list's pages, and an instance's view of its cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.response import Response

from apps.audit.models import AuditEvent
from apps.instances import services
from apps.instances.models import Cluster, Instance, InstanceEvent
from apps.instances.states import Observation
from tests.conftest import Actor
from tests.instances.cluster_helpers import cluster_row, room_for_clusters
from tests.instances.helpers import Catalog
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


def body(**overrides: Any) -> dict[str, Any]:
    """Two 8xH100 nodes in us-east-1; a None override drops the field."""
    values: dict[str, Any] = {
        "name": "llm",
        "instance_type": "gpu-h100x8",
        "region": "us-east-1",
        "image": "pytorch",
        "node_count": 2,
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


@pytest.fixture
def owner(tenant_owner: Actor, catalog: Catalog) -> Actor:
    room_for_clusters(tenant_owner.tenant, catalog.us_east)
    return tenant_owner


@pytest.fixture
def create(owner: Actor) -> Callable[..., Response]:
    def do(actor: Actor | None = None, headers: dict[str, str] | None = None, **overrides: Any) -> Response:
        actor = actor or owner
        return actor.token_client().post(
            actor.url("/clusters"), body(**overrides), format="json", headers=headers
        )

    return do


def observe_all(cluster_id: Any, *observations: Observation) -> None:
    for node in Instance.objects.filter(cluster_id=cluster_id).order_by("rank"):
        for observation in observations:
            services.instance_observe(instance_id=node.pk, observation=observation)


def test_create_answers_201_with_the_cluster_and_its_ranked_nodes(
    owner: Actor, create: Callable[..., Response], ssh_key: Any
) -> None:
    response = create(ssh_key_ids=[str(ssh_key.pk)], env={"NCCL_DEBUG": "INFO"}, command=["torchrun"])
    assert response.status_code == 201, response.content
    cluster = response.json()
    assert {k: cluster[k] for k in ("name", "region", "instance_type", "node_count", "state")} == {
        "name": "llm",
        "region": "us-east-1",
        "instance_type": "gpu-h100x8",
        "node_count": 2,
        "state": "pending",
    }
    assert (cluster["placement"], cluster["block"], cluster["on_node_failure"]) == (
        "block",
        "spine-1",
        "replace",
    )
    assert cluster["image"].startswith("nvcr.io/") and cluster["command"] == ["torchrun"]
    assert cluster["env_names"] == ["NCCL_DEBUG"]  # names only, like an instance's
    assert cluster["allowed_actions"] == ["stop", "terminate"]
    price = Cluster.objects.get(pk=cluster["id"]).price_per_hour
    assert cluster["price_per_hour"] == f"{price:.4f}"
    assert cluster["cluster_price_per_hour"] == f"{price * 2:.4f}"
    nodes = list(Instance.objects.filter(cluster_id=cluster["id"]).order_by("rank"))
    assert [(n.rank, n.name) for n in nodes] == [(0, "llm-0"), (1, "llm-1")]
    assert cluster["nodes"] == [
        {"rank": n.rank, "instance_id": str(n.pk), "name": n.name, "state": "pending", "connection": {}}
        for n in nodes
    ]
    assert all(list(n.ssh_keys.values_list("pk", flat=True)) == [ssh_key.pk] for n in nodes)
    assert owner.token_client().get(owner.url(f"/clusters/{cluster['id']}")).json() == cluster


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"node_count": 0}, "node_count", id="no-nodes"),
        pytest.param({"node_count": "two"}, "node_count", id="node-count-not-a-number"),
        pytest.param({"node_count": 65}, "node_count", id="beyond-max-cluster-nodes"),
        pytest.param({"node_count": None}, "node_count", id="node-count-missing"),
        pytest.param({"instance_type": "gpu-h100x1"}, "instance_type", id="not-a-whole-node-type"),
        pytest.param({"placement": "rack"}, "placement", id="bad-placement"),
        pytest.param({"on_node_failure": "pray"}, "on_node_failure", id="bad-on-node-failure"),
        pytest.param({"name": "x" * 41}, "name", id="name-too-long-for-node-names"),
        pytest.param({"colour": "red"}, "colour", id="unknown-field"),
    ],
)
def test_a_bad_request_answers_400_naming_the_field_and_writes_nothing(
    create: Callable[..., Response], overrides: dict[str, Any], field: str
) -> None:
    assert_error(create(**overrides), 400, "invalid", field=field)
    assert not Cluster.objects.exists() and not Instance.objects.exists()


def test_no_block_with_room_answers_409_no_capacity_with_details(create: Callable[..., Response]) -> None:
    response = create(node_count=17)  # spine-1 has 16 whole nodes
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "no_capacity"
    assert error["details"]["nodes"] == 17


def test_another_tenants_cluster_answers_404(
    owner: Actor, create: Callable[..., Response], make_actor: Callable[..., Actor]
) -> None:
    cluster_id = create().json()["id"]
    stranger = make_actor()
    client = stranger.token_client()
    for method, suffix in [
        ("get", ""),
        ("get", "/events"),
        ("post", "/stop"),
        ("post", "/start"),
        ("post", "/terminate"),
    ]:
        response = getattr(client, method)(stranger.url(f"/clusters/{cluster_id}{suffix}"))
        assert_error(response, 404, "not_found")
    assert client.get(stranger.url("/clusters")).json()["results"] == []
    assert Cluster.objects.get(pk=cluster_id).state == "pending"


def test_the_same_idempotency_key_replays_the_creation(create: Callable[..., Response]) -> None:
    headers = {"Idempotency-Key": "cluster-42"}
    first = create(headers=headers)
    second = create(headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert Cluster.objects.count() == 1 and Instance.objects.count() == 2
    assert AuditEvent.objects.filter(action="cluster.create").count() == 1
    reused = create(headers=headers, name="other")
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"


def test_stop_start_terminate_and_409_invalid_state(owner: Actor, create: Callable[..., Response]) -> None:
    client = owner.token_client()
    cluster_id = create().json()["id"]
    url = owner.url(f"/clusters/{cluster_id}")
    observe_all(cluster_id, Observation.POD_CREATED, Observation.POD_READY)
    assert client.get(url).json()["state"] == "running"

    refused = client.post(f"{url}/start")
    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["code"] == "invalid_state"
    assert error["details"] == {"state": "running", "allowed_actions": ["stop", "terminate"]}

    stopped = client.post(f"{url}/stop", headers={"Idempotency-Key": "stop-1"})
    assert stopped.status_code == 202 and stopped.json()["state"] == "stopping"
    replayed = client.post(f"{url}/stop", headers={"Idempotency-Key": "stop-1"})
    assert replayed.status_code == 202 and replayed.headers["Idempotent-Replayed"] == "true"
    assert_error(client.post(f"{url}/stop", {"force": True}, format="json"), 400, "invalid", field="force")
    observe_all(cluster_id, Observation.POD_GONE)
    assert client.get(url).json()["state"] == "stopped"
    assert client.post(f"{url}/stop").json()["error"]["code"] == "invalid_state"

    started = client.post(f"{url}/start")
    assert started.status_code == 202 and started.json()["state"] == "starting"
    assert {n["state"] for n in started.json()["nodes"]} == {"starting"}

    terminated = client.post(f"{url}/terminate")
    assert terminated.status_code == 202 and terminated.json()["state"] == "terminating"
    observe_all(cluster_id, Observation.POD_GONE)
    final = client.get(url).json()
    assert final["state"] == "terminated" and final["allowed_actions"] == []
    assert client.post(f"{url}/terminate").json()["error"]["code"] == "invalid_state"


def test_the_events_merge_every_nodes_timeline_with_rank_and_instance(
    owner: Actor, create: Callable[..., Response]
) -> None:
    client = owner.token_client()
    cluster_id = create().json()["id"]
    observe_all(cluster_id, Observation.POD_CREATED)
    response = client.get(owner.url(f"/clusters/{cluster_id}/events"))
    assert response.status_code == 200
    events = response.json()["results"]
    nodes = dict(Instance.objects.filter(cluster_id=cluster_id).values_list("rank", "id"))
    stored = InstanceEvent.objects.filter(instance__cluster_id=cluster_id).order_by("created_at", "id")
    assert [e["id"] for e in events] == [e.pk for e in stored]  # oldest first, as an instance's
    assert {(e["rank"], e["instance_id"]) for e in events} == {(r, str(i)) for r, i in nodes.items()}
    assert [(e["rank"], e["name"]) for e in events if e["name"] == "launch"] == [(0, "launch"), (1, "launch")]
    newest = client.get(owner.url(f"/clusters/{cluster_id}/events"), {"ordering": "-created_at"}).json()
    assert [e["id"] for e in newest["results"]] == [e["id"] for e in reversed(events)]
    first = client.get(owner.url(f"/clusters/{cluster_id}/events"), {"limit": 1}).json()
    assert [e["id"] for e in first["results"]] == [events[0]["id"]] and first["next"]


def test_the_list_pages_by_cursor_and_hides_terminated_clusters(owner: Actor) -> None:
    client = owner.token_client()
    made = [cluster_row(tenant=owner.tenant, created_by=owner.user, name=f"c{n}") for n in range(5)]
    cluster_row(tenant=owner.tenant, created_by=owner.user, name="gone", node_count=1, state="terminated")
    seen: list[str] = []
    page = client.get(owner.url("/clusters"), {"limit": 2}).json()
    while True:
        assert len(page["results"]) <= 2
        seen += [c["id"] for c in page["results"]]
        if not page["next"]:
            break
        page = client.get(page["next"]).json()
    newest_first = sorted(made, key=lambda c: (c.created_at, str(c.pk)), reverse=True)
    assert seen == [str(c.pk) for c in sorted(newest_first, key=lambda c: c.created_at, reverse=True)]
    assert len(seen) == 5 and page["count"] == 5
    everything = client.get(owner.url("/clusters"), {"include_terminated": "true", "limit": 50}).json()
    assert "gone" in {c["name"] for c in everything["results"]}
    by_state = client.get(owner.url("/clusters"), {"state": "terminated"}).json()["results"]
    assert [c["name"] for c in by_state] == ["gone"]
    by_name = client.get(owner.url("/clusters"), {"ordering": "name"}).json()["results"]
    assert [c["name"] for c in by_name] == ["c0", "c1", "c2", "c3", "c4"]


def test_a_node_instance_shows_its_cluster_and_rank_and_a_single_one_nulls(
    owner: Actor, create: Callable[..., Response], launch: Callable[..., Response]
) -> None:
    client = owner.token_client()
    cluster_id = create().json()["id"]
    single = launch(owner)
    assert single.status_code == 201, single.content
    assert (single.json()["cluster"], single.json()["rank"]) == (None, None)
    listed = client.get(owner.url("/instances"), {"ordering": "name"}).json()["results"]
    assert [(i["name"], i["cluster"], i["rank"]) for i in listed if i["cluster"]] == [
        ("llm-0", cluster_id, 0),
        ("llm-1", cluster_id, 1),
    ]
    node = Instance.objects.get(cluster_id=cluster_id, rank=1)
    shown = client.get(owner.url(f"/instances/{node.pk}")).json()
    assert (shown["cluster"], shown["rank"]) == (cluster_id, 1)


def test_stopping_a_node_directly_answers_409_cluster_node(
    owner: Actor, create: Callable[..., Response]
) -> None:
    cluster_id = create().json()["id"]
    node = Instance.objects.get(cluster_id=cluster_id, rank=0)
    response = owner.token_client().post(owner.url(f"/instances/{node.pk}/stop"))
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "cluster_node" and error["details"] == {"cluster_id": cluster_id}
    assert Instance.objects.get(pk=node.pk).state == "pending"


def test_a_page_of_clusters_costs_the_same_queries_whatever_its_nodes(owner: Actor) -> None:
    client = owner.token_client()
    cluster_row(tenant=owner.tenant, created_by=owner.user, name="small", node_count=1)
    client.get(owner.url("/clusters"))  # warm: the token's last_used_at

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(owner.url("/clusters")).status_code == 200
        return len(captured)

    few = count()
    for n in range(4):
        cluster_row(tenant=owner.tenant, created_by=owner.user, name=f"big{n}", node_count=4)
    assert count() == few


def test_a_viewer_reads_but_cannot_create_or_act(
    owner: Actor, create: Callable[..., Response], make_actor: Callable[..., Actor]
) -> None:
    cluster_id = create().json()["id"]
    viewer = make_actor("viewer", tenant=owner.tenant)
    client = viewer.token_client()
    assert client.get(viewer.url(f"/clusters/{cluster_id}")).status_code == 200
    assert_error(create(actor=viewer, name="mine"), 403, "role_forbidden")
    assert_error(client.post(viewer.url(f"/clusters/{cluster_id}/stop")), 403, "role_forbidden")
