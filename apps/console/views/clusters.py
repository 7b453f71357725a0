"""Cluster pages: the live list, the create form with the whole cluster's price, the cluster page with its
nodes, and stop/start/terminate (docs/clusters.md).

Built like the instance pages (views/instances.py): writes go through apps.instances.cluster_services, so
whatever refuses an API creation or action refuses it here with the same message, on the field it names
(402 and 409 above the form). Live parts poll with HTMX every 2 s and answer 204 while nothing changed.
A cluster's nodes are instances: each links to its instance page (SSH, logs, timeline).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from apps.catalog import selectors as catalog
from apps.catalog.models import ImagePolicy, Region
from apps.console.views.instances import POLL_TRIGGER, launch_block_reason
from apps.console.views.page_helpers import poll_fingerprint, unchanged, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core import tags as core_tags
from apps.core.errors import DomainError
from apps.instances import cluster_selectors, cluster_services
from apps.instances.api.cluster_serializers import ClusterCreateSerializer
from apps.instances.cluster_states import ClusterState, allowed_actions
from apps.instances.models import Cluster, OnNodeFailure, Placement
from apps.instances.states import Action, State
from apps.tenants import selectors as account_selectors
from apps.tenants.roles import Perm

ACTIONS = (Action.STOP, Action.START, Action.TERMINATE)
ACTION_TEXT = {
    Action.STOP: "Every node's pod is deleted; their disks are not kept. Billing stops once the nodes "
    "have stopped.",
    Action.START: "Every node starts again, admitted whole like a new cluster: quota, balance and a block "
    "with room for all nodes (they may land on other machines than before).",
    Action.TERMINATE: "Every node is deleted for good. This cannot be undone.",
}
VERB = {Action.STOP: "Stopping", Action.START: "Starting", Action.TERMINATE: "Terminating"}


def _cluster(t: TenantPage, cluster_id: UUID) -> Cluster:
    """One of the tenant's clusters, through the selector the API uses: another tenant's is a 404."""
    cluster = cluster_selectors.cluster_of(tenant=t.tenant, cluster_id=cluster_id)
    if cluster is None:
        raise Http404("Not found.")
    return cluster


def _total(price_per_node: Decimal, nodes: int) -> Decimal:
    return price_per_node * nodes


# --- list ----------------------------------------------------------------------------------------------


def _list_context(t: TenantPage) -> dict[str, Any]:
    state = t.request.GET.get("state", "")
    state = state if state in {s.value for s in ClusterState} else ""
    clusters = cluster_selectors.clusters_of(tenant=t.tenant)
    clusters = clusters.filter(state=state) if state else clusters.exclude(state=ClusterState.TERMINATED)
    rows: list[dict[str, Any]] = []
    seen: list[tuple[str, str, str, int]] = []
    for cluster in clusters.order_by("-created_at", "id")[:200]:
        # From the prefetched nodes (clusters_of): no query per cluster.
        running = sum(1 for node in cluster.nodes.all() if node.state == State.RUNNING)
        total = _total(cluster.price_per_hour, cluster.node_count)
        rows.append({"cluster": cluster, "total_price": total, "running_nodes": running})
        seen.append((str(cluster.pk), cluster.state, cluster.failure_reason, running))
    fingerprint = poll_fingerprint(seen)
    query = f"state={state}&" if state else ""
    return {
        "rows": rows,
        "state": state,
        "fingerprint": fingerprint,
        "poll_url": f"{reverse('console:clusters_table', args=[t.tenant.slug])}?{query}v={fingerprint}",
        "poll_trigger": POLL_TRIGGER,
    }


@tenant_page(Perm.INSTANCES_READ)
def cluster_list(t: TenantPage) -> HttpResponse:
    context = _list_context(t)
    context["states"] = [s.value for s in ClusterState]
    return t.render("console/clusters/list.html", context)


@tenant_page(Perm.INSTANCES_READ)
def cluster_table(t: TenantPage) -> HttpResponse:
    """The list's table alone, polled by HTMX: 204 while nothing changed."""
    context = _list_context(t)
    if unchanged(t.request, context["fingerprint"]):
        return HttpResponse(status=204)
    return t.render("console/clusters/_table.html", context)


# --- create --------------------------------------------------------------------------------------------


def _node_count(params: Any, region: Region | None) -> int:
    try:
        count = int(params.get("node_count", ""))
    except ValueError:
        count = 2
    upper = region.max_cluster_nodes if region is not None else count
    return max(1, min(count, upper))


def _create_options(params: Any) -> dict[str, Any]:
    """The region-dependent part of the form: the whole-node types offered there with their free whole nodes
    (in the region and in its roomiest block), the node count's bounds, the images, and the price."""
    regions = list(catalog.regions())
    region = next((r for r in regions if r.slug == params.get("region")), None) or (
        regions[0] if regions else None
    )
    offered = catalog.availability()
    free = catalog.whole_nodes_free_by_type()
    types: list[dict[str, Any]] = []
    for instance_type in catalog.active_instance_types():
        if region is None or not instance_type.whole_node or (region.pk, instance_type.pk) not in offered:
            continue
        blocks = free.get((region.pk, instance_type.pk), {})
        types.append(
            {
                "type": instance_type,
                "free_nodes": sum(blocks.values()),
                "largest_block": max(blocks.values(), default=0),
            }
        )
    chosen = params.get("instance_type", "")
    selected = next((row for row in types if row["type"].slug == chosen), None)
    if selected is None:
        selected = next((row for row in types if row["free_nodes"]), types[0] if types else None)
    node_count = _node_count(params, region)
    selected_type = selected["type"] if selected else None
    policy = ImagePolicy.current()
    zones = catalog.zones_of(region) if region else []
    return {
        "regions": regions,
        "region": region,
        "zones": zones,
        "zone": params.get("zone", "") if params.get("zone", "") in zones else "",
        "types": types,
        "selected_type": selected_type,
        "node_count": node_count,
        # What was typed, shown back as typed (a refused 500 stays 500 beside its error).
        "node_count_value": params.get("node_count", "") or str(node_count),
        "max_nodes": region.max_cluster_nodes if region is not None else 1,
        "total_price": _total(selected_type.price_per_hour, node_count) if selected_type else None,
        "images": list(catalog.images_in(region=region)) if region else [],
        "image": params.get("image", ""),
        "custom_image": params.get("custom_image", ""),
        "allow_custom_images": policy.allow_custom_images and bool(policy.allowed_registries),
        "allowed_registries": policy.allowed_registries,
    }


def _create_context(t: TenantPage, params: Any, **extra: Any) -> dict[str, Any]:
    keys = account_selectors.ssh_keys_visible_to(membership=t.membership).order_by("name", "id")
    placement = params.get("placement", Placement.BLOCK)
    on_node_failure = params.get("on_node_failure", OnNodeFailure.REPLACE)
    if on_node_failure not in OnNodeFailure.values:
        on_node_failure = OnNodeFailure.REPLACE
    return {
        **_create_options(params),
        "ssh_keys": list(keys),
        "chosen_keys": set(params.getlist("ssh_key_ids")) if hasattr(params, "getlist") else set(),
        "name": params.get("name", ""),
        "placement": placement if placement in Placement.values else Placement.BLOCK,
        "placements": Placement.choices,
        "on_node_failure": on_node_failure,
        "on_node_failure_choices": OnNodeFailure.choices,
        "tags_text": params.get("tags", ""),
        "blocked": launch_block_reason(t),
        "field_errors": {},
        **extra,
    }


def _cluster_request(params: Any) -> cluster_services.ClusterRequest:
    custom = params.get("custom_image", "").strip()
    data: dict[str, Any] = {
        "instance_type": params.get("instance_type", ""),
        "region": params.get("region", ""),
        "image": custom or params.get("image", ""),
        "node_count": params.get("node_count", ""),
        "placement": params.get("placement", ""),
        "on_node_failure": params.get("on_node_failure", ""),
        "ssh_key_ids": params.getlist("ssh_key_ids"),
    }
    name = params.get("name", "").strip()
    if name:
        data["name"] = name
    if params.get("zone", ""):
        data["zone"] = params.get("zone")
    data["tags"] = core_tags.parse_lines(params.get("tags", ""))
    return cluster_services.ClusterRequest(**validated(ClusterCreateSerializer, data))


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def cluster_create(t: TenantPage) -> HttpResponse:
    if t.request.method != "POST":
        return t.render("console/clusters/create.html", _create_context(t, t.request.GET))
    params = t.request.POST
    try:
        cluster = cluster_services.cluster_create(actor=t.user, tenant=t.tenant, req=_cluster_request(params))
    except DomainError as exc:
        context = _create_context(t, params, error=exc.message, field_errors=exc.fields)
        return t.render("console/clusters/create.html", context, status=exc.status_code)
    messages.success(
        t.request,
        f"Creating {cluster.name}: {cluster.node_count} nodes. It shows as running once every node is.",
    )
    return redirect("console:cluster_detail", t.tenant.slug, cluster.pk)


@tenant_page(Perm.INSTANCES_WRITE)
def cluster_create_options(t: TenantPage) -> HttpResponse:
    """The form's region-dependent part (types, node count, images, price), for HTMX."""
    return t.render("console/clusters/_create_options.html", _create_context(t, t.request.GET))


@tenant_page(Perm.INSTANCES_WRITE)
def cluster_estimate(t: TenantPage) -> HttpResponse:
    """The whole cluster's price per hour for the chosen type and node count, for HTMX."""
    return t.render("console/clusters/_estimate.html", _create_options(t.request.GET))


# --- one cluster ---------------------------------------------------------------------------------------


def _status_context(t: TenantPage, cluster: Cluster) -> dict[str, Any]:
    nodes = list(cluster_selectors.cluster_nodes(cluster))
    fingerprint = poll_fingerprint(
        cluster.state,
        cluster.desired_state,
        cluster.failure_reason,
        cluster.state_message,
        cluster.block,
        [(str(n.pk), n.state, n.failure_reason, n.state_message, n.connection) for n in nodes],
    )
    can_act = t.can(Perm.INSTANCES_WRITE)
    return {
        "cluster": cluster,
        "nodes": nodes,
        "total_price": _total(cluster.price_per_hour, cluster.node_count),
        "actions": allowed_actions(cluster.state) if can_act else [],
        "fingerprint": fingerprint,
        "poll_url": reverse("console:cluster_status", args=[t.tenant.slug, cluster.pk]) + f"?v={fingerprint}",
        "poll_trigger": POLL_TRIGGER,
    }


@tenant_page(Perm.INSTANCES_READ)
def cluster_detail(t: TenantPage, cluster_id: UUID) -> HttpResponse:
    return t.render("console/clusters/detail.html", _status_context(t, _cluster(t, cluster_id)))


@tenant_page(Perm.INSTANCES_READ)
def cluster_status(t: TenantPage, cluster_id: UUID) -> HttpResponse:
    """The cluster page's live part (state and nodes), polled by HTMX: 204 while nothing changed."""
    context = _status_context(t, _cluster(t, cluster_id))
    if unchanged(t.request, context["fingerprint"]):
        return HttpResponse(status=204)
    return t.render("console/clusters/_status.html", context)


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def cluster_action(t: TenantPage, cluster_id: UUID, action: str) -> HttpResponse:
    """GET: the confirmation page (works without JavaScript). POST: do it, through the service."""
    try:
        act = Action(action)
    except ValueError as exc:
        raise Http404("Not found.") from exc
    if act not in ACTIONS:
        raise Http404("Not found.")
    cluster = _cluster(t, cluster_id)
    context: dict[str, Any] = {"cluster": cluster, "action": act.value, "explanation": ACTION_TEXT[act]}
    if t.request.method != "POST":
        return t.render("console/clusters/confirm.html", context)
    try:
        t.require_status(cleanup=act in (Action.STOP, Action.TERMINATE))
        cluster_services.cluster_act(actor=t.user, cluster=cluster, action=act)
    except DomainError as exc:
        context["error"] = exc.message
        return t.render("console/clusters/confirm.html", context, status=exc.status_code)
    messages.success(t.request, f"{VERB[act]} {cluster.name}.")
    return redirect("console:cluster_detail", t.tenant.slug, cluster.pk)
