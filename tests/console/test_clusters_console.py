"""The cluster pages: the live list (nodes, state, placement, the whole cluster's price), the create form
(whole-node types, node count, image, placement, SSH keys, the price of all nodes) with the service's
refusals on the form, the cluster page with its nodes (each linking to its instance page, with its SSH
command) polled by HTMX, and stop/start/terminate with a confirmation step; roles and isolation: a viewer
sees but cannot act, another tenant's cluster is a 404 that names nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.accounts import services as account_services
from apps.audit.models import AuditEvent
from apps.catalog.models import Region, RegionCapacity
from apps.instances import cluster_services, services
from apps.instances.cluster_services import ClusterRequest
from apps.instances.models import Cluster, Instance
from apps.instances.states import Action, Observation
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import grant
from tests.console.helpers import (
    client_for,
    cluster_form,
    cluster_rows,
    ed25519_public_key,
    page,
    whole_nodes,
)
from tests.factories import TenantFactory
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db

ROOMY = {"max_gpus": 1_000, "max_instances": 100, "max_vcpu": 100_000, "max_memory_gib": 1_000_000}
CONNECTION = {
    "host": "203.0.113.7",
    "port": 30022,
    "user": "root",
    "ssh_command": "ssh -p 30022 root@203.0.113.7",
}


@pytest.fixture
def owner(make_actor: Callable[..., Any], catalog: Any) -> Any:
    """An owner of Acme whose quota fits a few 8-GPU nodes, in a region with four free H100 machines in
    block spine-1 and three in spine-2."""
    actor = make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))
    set_quota(actor.tenant, **ROOMY)
    us = Region.objects.get(slug="us-east-1")
    RegionCapacity.objects.filter(region=us, gpu_type__slug="h100-80gb").update(
        gpus=8 * 20, vcpu=200 * 20, memory_gib=1750 * 20
    )
    whole_nodes(us, "spine-1", 4)
    whole_nodes(us, "spine-2", 3)
    return actor


def _create(owner: Any, nodes: int = 2, **fields: Any) -> Cluster:
    req = ClusterRequest(
        instance_type="gpu-h100x8", region="us-east-1", image="pytorch", node_count=nodes, **fields
    )
    return cluster_services.cluster_create(actor=owner.user, tenant=owner.tenant, req=req)


def _post(client: Client, owner: Any, **fields: Any) -> Any:
    data = cluster_form(**fields)
    return client.post(page("cluster_create", owner.tenant), {k: v for k, v in data.items() if v is not None})


def _run(cluster: Cluster) -> None:
    for node in Instance.objects.filter(cluster=cluster).order_by("rank"):
        services.instance_observe(instance_id=node.pk, observation=Observation.POD_CREATED)
        services.instance_observe(
            instance_id=node.pk, observation=Observation.POD_READY, connection=CONNECTION
        )


# --- list ----------------------------------------------------------------------------------------------


def test_the_list_shows_live_clusters_with_the_whole_price_and_polls(owner: Any) -> None:
    _create(owner, 3, name="trainers")
    cluster_rows(
        owner.tenant, created_by=owner.user, name="gone", state="terminated", node_state="terminated"
    )

    client = client_for(owner.user)
    response = client.get(page("clusters", owner.tenant))

    assert response.status_code == 200
    assert [row["cluster"].name for row in response.context["rows"]] == ["trainers"]
    html = response.content.decode()
    assert "trainers" in html and "gone" not in html
    # The whole cluster: 3 nodes at 19.92.
    assert "$59.76/h" in html and "3 \N{MULTIPLICATION SIGN} $19.92" in html
    assert "gpu-h100x8" in html and "<code>spine-2</code>" in html  # the tightest block that fits 3
    assert 'hx-trigger="every 2s"' in html
    assert f'hx-get="{page("clusters_table", owner.tenant)}?' in html
    assert f'href="{page("cluster_create", owner.tenant)}"' in html
    # The navigation has the page, marked current here.
    assert f'<a href="{page("clusters", owner.tenant)}" aria-current="page">Clusters</a>' in html
    dashboard = client.get(page("dashboard", owner.tenant)).content.decode()
    assert f'<a href="{page("clusters", owner.tenant)}">Clusters</a>' in dashboard


def test_the_polled_table_answers_204_until_something_changes(owner: Any) -> None:
    cluster = _create(owner, 2, name="pair")
    client = client_for(owner.user)
    poll_url = client.get(page("clusters", owner.tenant)).context["poll_url"]

    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
    _run(cluster)
    changed = client.get(poll_url, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    html = changed.content.decode()
    assert "<html" not in html and "state-running" in html and "(2 running)" in html


# --- create --------------------------------------------------------------------------------------------


def test_the_form_offers_whole_node_types_node_count_images_and_the_clusters_price(owner: Any) -> None:
    client = client_for(owner.user)
    response = client.get(page("cluster_create", owner.tenant))

    assert response.status_code == 200
    assert response.context["region"].slug == "us-east-1"
    types = {row["type"].slug: row for row in response.context["types"]}
    assert "gpu-h100x8" in types and "gpu-h100x1" not in types  # whole-node types only
    assert all(row["type"].whole_node for row in types.values())
    assert (types["gpu-h100x8"]["free_nodes"], types["gpu-h100x8"]["largest_block"]) == (7, 4)
    assert {i.slug for i in response.context["images"]} == {"cuda-12", "pytorch", "jupyter"}
    html = response.content.decode()
    assert f'max="{response.context["region"].max_cluster_nodes}"' in html
    assert '<output id="cluster-price" for="node_count">$39.84</output>' in html  # 2 nodes by default
    assert 'name="placement" value="block" checked' in html and 'name="placement" value="any"' in html
    assert 'name="on_node_failure"' in html
    # HTMX: the region reloads the options; any change recomputes the price.
    assert f'hx-get="{page("cluster_create_options", owner.tenant)}"' in html
    assert f'hx-get="{page("cluster_estimate", owner.tenant)}"' in html

    estimate = client.get(
        page("cluster_estimate", owner.tenant),
        {"region": "us-east-1", "instance_type": "gpu-h100x8", "node_count": "4"},
        headers={"HX-Request": "true"},
    )
    assert estimate.status_code == 200
    text = estimate.content.decode()
    assert "<html" not in text and "$79.68" in text and "4 nodes \N{MULTIPLICATION SIGN} $19.92" in text
    options = client.get(page("cluster_create_options", owner.tenant), {"region": "eu-west-1"})
    assert "<html" not in options.content.decode()
    assert all(row["type"].whole_node for row in options.context["types"])


def test_creating_a_cluster_makes_its_nodes_and_shows_its_page(owner: Any) -> None:
    key = account_services.ssh_key_create(
        actor=owner.user, tenant=owner.tenant, name="laptop", public_key=ed25519_public_key(), private=False
    )
    client = client_for(owner.user)

    response = _post(client, owner, name="trainers", node_count="3", ssh_key_ids=[str(key.pk)])

    cluster = Cluster.objects.get(tenant=owner.tenant)
    assert response.status_code == 302
    assert response.url == page("cluster_detail", owner.tenant, cluster.pk)
    assert (cluster.name, cluster.node_count, cluster.block, cluster.placement) == (
        "trainers",
        3,
        "spine-2",
        "block",
    )
    nodes = list(Instance.objects.filter(cluster=cluster).order_by("rank"))
    assert [(n.rank, n.name) for n in nodes] == [(0, "trainers-0"), (1, "trainers-1"), (2, "trainers-2")]
    assert all(list(n.ssh_keys.all()) == [key] for n in nodes)
    assert AuditEvent.objects.get(action="cluster.create", tenant=owner.tenant).via == "console"
    followed = client.get(response.url)
    assert "Creating trainers: 3 nodes." in followed.content.decode()


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"node_count": "65"}, "node_count", "Must be between 1 and 64 in us-east-1."),
        ({"node_count": "lots"}, "node_count", "A valid integer is required."),
        ({"instance_type": "gpu-h100x1"}, "instance_type", "not a whole-node type"),
        ({"name": "Not Valid!"}, "name", ""),
        ({"ssh_key_ids": ["not-a-uuid"]}, "ssh_key_ids", ""),
        ({"placement": "rack"}, "placement", ""),
    ],
)
def test_a_refused_field_is_named_on_the_form_and_nothing_is_written(
    owner: Any, fields: dict[str, Any], field: str, says: str
) -> None:
    response = _post(client_for(owner.user), owner, **fields)

    assert response.status_code == 400
    assert field in response.context["field_errors"]
    html = response.content.decode()
    assert 'id="cluster-error"' in html and says in html
    assert not Cluster.objects.exists() and not Instance.objects.exists()
    if field == "node_count":
        assert 'id="node-count-error"' in html and 'aria-invalid="true"' in html
        assert f'value="{fields["node_count"]}"' in html  # shown back as typed


def test_no_block_with_room_is_a_form_level_409_that_suggests_any(owner: Any) -> None:
    client = client_for(owner.user)

    refused = _post(client, owner, name="wide", node_count="5")

    assert refused.status_code == 409
    assert refused.context["field_errors"] == {}
    html = refused.content.decode()
    assert 'role="alert" id="cluster-error"' in html and "placement &#x27;any&#x27;" in html
    assert not Cluster.objects.exists()
    # Spread over both blocks, it fits.
    assert _post(client, owner, name="wide", node_count="5", placement="any").status_code == 302
    assert Cluster.objects.get(name="wide").block == ""


def test_funds_for_the_whole_cluster_are_a_form_level_402(make_actor: Callable[..., Any], owner: Any) -> None:
    broke = make_actor(Role.OWNER, tenant=TenantFactory(credit=0))
    set_quota(broke.tenant, **ROOMY)
    grant(broke.tenant, "6.64")  # ten minutes of two nodes at 19.92/h, not of three

    refused = _post(client_for(broke.user), broke, name="dear", node_count="3")

    assert refused.status_code == 402
    assert refused.context["field_errors"] == {}
    assert 'id="cluster-error"' in refused.content.decode()
    assert not Cluster.objects.exists()


# --- one cluster ---------------------------------------------------------------------------------------


def test_the_cluster_page_shows_each_node_its_link_ssh_command_and_block(owner: Any) -> None:
    cluster = _create(owner, 2, name="pair")
    _run(cluster)

    response = client_for(owner.user).get(page("cluster_detail", owner.tenant, cluster.pk))

    assert response.status_code == 200
    assert [n.name for n in response.context["nodes"]] == ["pair-0", "pair-1"]
    html = response.content.decode()
    assert 'id="cluster-state">running<' in html
    for node in response.context["nodes"]:
        assert f'<a href="{page("instance_detail", owner.tenant, node.pk)}">{node.name}</a>' in html
        assert f'<code id="connect-{node.rank}">ssh -p 30022 root@203.0.113.7</code>' in html
    assert "All nodes in block <code>spine-2</code>" in html
    assert "$39.84 per hour for the whole cluster" in html
    assert response.context["actions"] == ["stop", "terminate"]
    for action in ("stop", "terminate"):
        assert f'action="{page("cluster_action", owner.tenant, cluster.pk, action)}"' in html
    assert 'hx-trigger="every 2s"' in html and 'id="cluster-status"' in html


def test_a_failed_cluster_shows_its_reason(owner: Any) -> None:
    cluster = cluster_rows(
        owner.tenant,
        created_by=owner.user,
        state="failed",
        node_state="failed",
        failure_reason="no_capacity",
        state_message="A node could not be placed.",
    )
    html = client_for(owner.user).get(page("cluster_detail", owner.tenant, cluster.pk)).content.decode()
    assert "no_capacity: A node could not be placed." in html


def test_the_node_table_answers_204_until_something_changes(owner: Any) -> None:
    cluster = _create(owner, 2, name="pair")
    client = client_for(owner.user)
    poll_url = client.get(page("cluster_detail", owner.tenant, cluster.pk)).context["poll_url"]
    assert poll_url.startswith(page("cluster_status", owner.tenant, cluster.pk))

    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204
    node = Instance.objects.get(cluster=cluster, rank=1)
    services.instance_observe(instance_id=node.pk, observation=Observation.POD_READY, connection=CONNECTION)
    changed = client.get(poll_url, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    html = changed.content.decode()
    assert "<html" not in html and "ssh -p 30022" in html


def test_a_nodes_instance_page_points_at_its_cluster_and_offers_no_actions(owner: Any) -> None:
    cluster = _create(owner, 2, name="pair")
    node = Instance.objects.get(cluster=cluster, rank=1)
    response = client_for(owner.user).get(page("instance_detail", owner.tenant, node.pk))
    assert response.context["actions"] == []
    html = response.content.decode()
    assert f'Node 1 of cluster <a href="{page("cluster_detail", owner.tenant, cluster.pk)}">pair</a>' in html


@pytest.mark.parametrize(
    ("action", "start_state", "end_state"),
    [
        ("stop", "running", "stopping"),
        ("terminate", "running", "terminating"),
        ("start", "stopped", "starting"),
    ],
)
def test_actions_confirm_then_post(owner: Any, action: str, start_state: str, end_state: str) -> None:
    cluster = _create(owner, 2, name="pair")
    _run(cluster)
    if start_state == "stopped":
        cluster_services.cluster_act(actor=owner.user, cluster=cluster, action=Action.STOP)
        for node in Instance.objects.filter(cluster=cluster):
            services.instance_observe(instance_id=node.pk, observation=Observation.POD_GONE)
    cluster.refresh_from_db()
    assert cluster.state == start_state
    client = client_for(owner.user)
    url = page("cluster_action", owner.tenant, cluster.pk, action)

    confirm = client.get(url)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert f"Yes, {action} pair" in html and 'method="post"' in html and "csrfmiddlewaretoken" in html
    cluster.refresh_from_db()
    assert cluster.state == start_state  # the confirmation page changes nothing

    done = client.post(url)
    assert done.status_code == 302
    assert done.url == page("cluster_detail", owner.tenant, cluster.pk)
    cluster.refresh_from_db()
    assert cluster.state == end_state
    assert AuditEvent.objects.get(action=f"cluster.{action}", tenant=owner.tenant).via == "console"


def test_an_invalid_transition_is_explained_and_an_unknown_action_is_404(owner: Any) -> None:
    cluster = _create(owner, 2, name="pair")
    client = client_for(owner.user)
    refused = client.post(page("cluster_action", owner.tenant, cluster.pk, "start"))
    assert refused.status_code == 409
    assert "Cannot start a cluster that is pending." in refused.content.decode()
    for action in ("restart", "explode"):
        assert client.get(page("cluster_action", owner.tenant, cluster.pk, action)).status_code == 404
        assert client.post(page("cluster_action", owner.tenant, cluster.pk, action)).status_code == 404


def test_a_viewer_sees_the_cluster_but_cannot_create_or_act(
    make_actor: Callable[..., Any], owner: Any
) -> None:
    cluster = _create(owner, 2, name="pair")
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = client_for(viewer.user)

    listing = client.get(page("clusters", owner.tenant)).content.decode()
    assert "pair" in listing and "Create a cluster" not in listing
    detail = client.get(page("cluster_detail", owner.tenant, cluster.pk))
    assert detail.status_code == 200 and detail.context["actions"] == []
    html = detail.content.decode()
    assert "pair-0" in html and "Cluster actions" not in html
    for action in ("stop", "terminate"):
        url = page("cluster_action", owner.tenant, cluster.pk, action)
        assert url not in html
        assert client.get(url).status_code == 403
        assert client.post(url).status_code == 403
    assert client.get(page("cluster_create", owner.tenant)).status_code == 403
    assert _post(client, owner, name="mine").status_code == 403
    cluster.refresh_from_db()
    assert cluster.desired_state == "running" and Cluster.objects.count() == 1
    assert not AuditEvent.objects.filter(action__in=["cluster.stop", "cluster.terminate"]).exists()


def test_another_tenants_cluster_is_a_404_that_names_nothing(
    make_actor: Callable[..., Any], owner: Any
) -> None:
    secret = _create(owner, 2, name="secret-gang")
    stranger = make_actor(Role.OWNER, tenant=TenantFactory(name="Other Co", slug="other"))
    client = client_for(stranger.user)

    urls = [
        # Their own tenant's URL with the other tenant's cluster id, and the other tenant's URLs.
        page("cluster_detail", stranger.tenant, secret.pk),
        page("cluster_status", stranger.tenant, secret.pk),
        page("cluster_action", stranger.tenant, secret.pk, "stop"),
        page("cluster_detail", owner.tenant, secret.pk),
        page("clusters", owner.tenant),
        page("cluster_create", owner.tenant),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404, url
        html = response.content.decode()
        assert "Acme Research" not in html and "secret-gang" not in html, url
    assert "secret-gang" not in client.get(page("clusters", stranger.tenant)).content.decode()
    for tenant in (stranger.tenant, owner.tenant):
        assert client.post(page("cluster_action", tenant, secret.pk, "terminate")).status_code == 404
    secret.refresh_from_db()
    assert secret.desired_state == "running"


def test_pages_need_a_session(owner: Any) -> None:
    cluster = cluster_rows(owner.tenant, created_by=owner.user)
    for url in (page("clusters", owner.tenant), page("cluster_detail", owner.tenant, cluster.pk)):
        response = Client().get(url)
        assert response.status_code == 302 and "/login" in response.url
