"""Instance pages: launch, the live list, the instance page with its timeline and logs, and the actions.

Writes go through apps.instances.services (the API's service layer): whatever refuses an API launch or action
refuses it here with the same message, shown on the form. Live parts poll with HTMX every 2 s; the server
answers 204 (htmx swaps nothing) while nothing changed, so polling neither flickers nor steals focus.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from apps.billing.limits import require_funds
from apps.catalog import selectors as catalog
from apps.catalog.models import ImagePolicy, InstanceType, Region
from apps.console.views.page_helpers import poll_fingerprint, unchanged, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core import tags as core_tags
from apps.core.errors import DomainError
from apps.instances import selectors, services
from apps.instances.api.serializers import InstanceLaunchSerializer
from apps.instances.models import Instance
from apps.instances.states import Action, State, allowed_actions
from apps.quotas.selectors import quota_overview
from apps.storage import selectors as storage_selectors
from apps.storage.models import ATTACHABLE
from apps.tenants import selectors as account_selectors
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Perm

POLL_TRIGGER = "every 2s"
AUTO_STOP_CHOICES = [
    ("", "Never"),
    ("3600", "After 1 hour"),
    ("7200", "After 2 hours"),
    ("14400", "After 4 hours"),
    ("28800", "After 8 hours"),
    ("86400", "After 24 hours"),
]
CPU_ONLY = "cpu"
ACTION_TEXT = {
    Action.STOP: "The instance's pod is deleted; its disk is not kept. Billing stops once it has stopped.",
    Action.START: "The instance starts again with the same type, image and keys, if quota, capacity and "
    "balance allow.",
    Action.RESTART: "The running pod is replaced by a new one; running processes end.",
    Action.TERMINATE: "The instance is deleted for good. This cannot be undone.",
}
MOUNT_ROOT = "/mnt"


def _instance(t: TenantPage, instance_id: UUID) -> Instance:
    instance = selectors.instances_of(tenant=t.tenant).filter(pk=instance_id).first()
    if instance is None:
        raise Http404("Not found.")
    return instance


# --- list ----------------------------------------------------------------------------------------------


def _list_filters(t: TenantPage) -> dict[str, str]:
    state = t.request.GET.get("state", "")
    region = t.request.GET.get("region", "")
    return {
        "state": state if state in {s.value for s in State} else "",
        "region": region if Region.objects.filter(slug=region).exists() else "",
    }


def _list_context(t: TenantPage) -> dict[str, Any]:
    filters = _list_filters(t)
    instances = selectors.instances_of(tenant=t.tenant).order_by("-created_at", "id")
    if filters["state"]:
        instances = instances.filter(state=filters["state"])
    else:
        instances = instances.exclude(state=State.TERMINATED)
    if filters["region"]:
        instances = instances.filter(region__slug=filters["region"])
    rows = list(instances[:200])
    fingerprint = poll_fingerprint(
        [(str(i.pk), i.name, i.state, i.failure_reason, i.connection.get("ssh_command")) for i in rows]
    )
    query = "&".join(f"{key}={value}" for key, value in filters.items() if value)
    return {
        "instances": rows,
        "filters": filters,
        "fingerprint": fingerprint,
        "poll_url": f"{reverse('console:instances_table', args=[t.tenant.slug])}?{query}&v={fingerprint}",
        "poll_trigger": POLL_TRIGGER,
    }


@tenant_page(Perm.INSTANCES_READ)
def instance_list(t: TenantPage) -> HttpResponse:
    context = _list_context(t)
    context.update(states=[s.value for s in State], regions=list(catalog.regions()))
    return t.render("console/instances/list.html", context)


@tenant_page(Perm.INSTANCES_READ)
def instance_table(t: TenantPage) -> HttpResponse:
    """The list's table alone, polled by HTMX: 204 while nothing changed."""
    context = _list_context(t)
    if unchanged(t.request, context["fingerprint"]):
        return HttpResponse(status=204)
    return t.render("console/instances/_table.html", context)


# --- launch --------------------------------------------------------------------------------------------


def launch_block_reason(t: TenantPage) -> str | None:
    """Why no launch can succeed now whatever is chosen (the tenant's status or its funds), or None."""
    tenant = t.tenant
    if tenant.status != TenantStatus.ACTIVE:
        reason = f" Reason: {tenant.status_reason}" if tenant.status_reason else ""
        return f"This tenant is {tenant.status} and cannot launch instances.{reason}"
    try:
        # Whatever is chosen, the wallet must carry what already runs (the launch checks the type too).
        require_funds(tenant=tenant, price_per_hour=Decimal(0))
    except DomainError as exc:
        return exc.message
    return None


def _quota_note(
    instance_type: InstanceType,
    region: Region,
    limits: dict[str, dict[str, int]],
    gpu_limits: list[dict[str, Any]],
) -> str:
    """Why the tenant's quota would refuse this type in `region` now, or "": the rules and the order of
    apps.quotas.services.admit (which re-checks under lock), from one quota_overview read."""
    labels = {"instances": "instances", "gpus": "GPUs", "vcpu": "vCPU", "memory_gib": "GiB memory"}

    def over(resource: str, amount: int) -> str:
        row = limits.get(resource)
        if row and amount and row["used"] + amount > row["limit"]:
            return f"Over quota: {row['used']} of {row['limit']} {labels[resource]} in use."
        return ""

    note = over("instances", 1) or over("gpus", instance_type.gpu_count)
    if note:
        return note
    gpu_type = instance_type.gpu_type
    if gpu_type is not None and instance_type.gpu_count:
        for row in gpu_limits:
            if row["gpu_type"] != gpu_type.slug or row["region"] not in (None, region.slug):
                continue
            if row["used"] + instance_type.gpu_count > row["limit"]:
                where = f" in {row['region']}" if row["region"] is not None else ""
                return (
                    f"Over quota: {row['used']} of {row['limit']} {gpu_type.slug} GPUs{where} in use, "
                    f"this type needs {instance_type.gpu_count}."
                )
    return over("vcpu", instance_type.vcpu) or over("memory_gib", instance_type.memory_gib)


def _launch_volumes(t: TenantPage, region: Region | None, params: Any) -> list[dict[str, Any]]:
    """The tenant's volumes in the region that an instance could mount, each with its mount path (default
    /mnt/<name>) and, for a ReadWriteOnce volume another instance holds, who holds it (not choosable)."""
    if region is None or not t.can(Perm.STORAGE_READ):
        return []
    chosen = set(params.getlist("volume_ids")) if hasattr(params, "getlist") else set()
    found = storage_selectors.volumes_of(tenant=t.tenant).filter(region=region, state__in=ATTACHABLE)
    rows = []
    for volume in found.order_by("name", "id"):
        held_by = [a.instance.name for a in getattr(volume, "live_attachments", [])]
        key = str(volume.pk)
        rows.append(
            {
                "volume": volume,
                "checked": key in chosen,
                "mount_path": params.get(f"mount_path_{key}", f"{MOUNT_ROOT}/{volume.name}"),
                "held_by": held_by if not volume.multi_attach else [],
            }
        )
    return rows


def _launch_options(t: TenantPage, params: Any) -> dict[str, Any]:
    """Regions, GPU types, the instance types offered in the chosen region with availability and price,
    that region's images and the tenant's volumes there."""
    regions = list(catalog.regions())
    region = next((r for r in regions if r.slug == params.get("region")), None) or (
        regions[0] if regions else None
    )
    gpu_types = list(catalog.gpu_types())
    gpu_type = params.get("gpu_type", "")
    if gpu_type not in {g.slug for g in gpu_types} | {CPU_ONLY}:
        gpu_type = ""
    available = catalog.availability()
    overview = quota_overview(tenant=t.tenant)
    limits = {row["resource"]: row for row in overview["limits"]}
    types: list[dict[str, Any]] = []
    for instance_type in catalog.active_instance_types():
        if region is None or (region.pk, instance_type.pk) not in available:
            continue  # not offered in this region
        slug = instance_type.gpu_type.slug if instance_type.gpu_type else CPU_ONLY
        if gpu_type and slug != gpu_type:
            continue
        types.append(
            {
                "type": instance_type,
                "available": available[(region.pk, instance_type.pk)],
                "quota_note": _quota_note(instance_type, region, limits, overview["gpu_types"]),
            }
        )
    chosen = params.get("instance_type", "")
    selected = next((row for row in types if row["type"].slug == chosen), None)
    if selected is None:
        selected = next((row for row in types if row["available"] and not row["quota_note"]), None)
    policy = ImagePolicy.current()
    zones = catalog.zones_of(region) if region else []
    zone = params.get("zone", "")
    zone_room = (
        catalog.availability_by_zone(available).get((region.pk, selected["type"].pk), {})
        if region and selected
        else {}
    )
    return {
        "regions": regions,
        "region": region,
        "zones": [{"name": z, "available": zone_room.get(z)} for z in zones],
        "zone": zone if zone in zones else "",
        "gpu_types": gpu_types,
        "gpu_type": gpu_type,
        "types": types,
        "selected_type": selected["type"] if selected else None,
        "images": list(catalog.images_in(region=region)) if region else [],
        "image": params.get("image", ""),
        "custom_image": params.get("custom_image", ""),
        # With no registry allowed, every custom reference would be refused: offer no field for one.
        "allow_custom_images": policy.allow_custom_images and bool(policy.allowed_registries),
        "allowed_registries": policy.allowed_registries,
        "volume_rows": _launch_volumes(t, region, params),
    }


def _launch_context(t: TenantPage, params: Any, **extra: Any) -> dict[str, Any]:
    keys = account_selectors.ssh_keys_visible_to(membership=t.membership).order_by("name", "id")
    return {
        **_launch_options(t, params),
        "ssh_keys": list(keys),
        "chosen_keys": set(params.getlist("ssh_key_ids")) if hasattr(params, "getlist") else set(),
        "name": params.get("name", ""),
        "auto_stop_after": params.get("auto_stop_after", ""),
        "auto_stop_choices": AUTO_STOP_CHOICES,
        "tags_text": params.get("tags", ""),
        "blocked": launch_block_reason(t),
        "field_errors": {},
        **extra,
    }


def _launch_request(params: Any) -> services.LaunchRequest:
    custom = params.get("custom_image", "").strip()
    data: dict[str, Any] = {
        "instance_type": params.get("instance_type", ""),
        "region": params.get("region", ""),
        "image": custom or params.get("image", ""),
        "ssh_key_ids": params.getlist("ssh_key_ids"),
    }
    name = params.get("name", "").strip()
    if name:
        data["name"] = name
    if params.get("zone", ""):
        data["zone"] = params.get("zone")
    if params.get("auto_stop_after", ""):
        data["auto_stop_after"] = params.get("auto_stop_after")
    data["tags"] = core_tags.parse_lines(params.get("tags", ""))
    volume_ids = params.getlist("volume_ids")
    if volume_ids:
        data["volumes"] = [
            {"volume_id": v, "mount_path": params.get(f"mount_path_{v}", "").strip()} for v in volume_ids
        ]
    return services.LaunchRequest(**validated(InstanceLaunchSerializer, data))


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def launch(t: TenantPage) -> HttpResponse:
    if t.request.method != "POST":
        return t.render("console/instances/launch.html", _launch_context(t, t.request.GET))
    params = t.request.POST
    try:
        instance = services.instance_launch(actor=t.user, tenant=t.tenant, req=_launch_request(params))
    except DomainError as exc:
        context = _launch_context(t, params, error=exc.message, field_errors=exc.fields)
        return t.render("console/instances/launch.html", context, status=exc.status_code)
    messages.success(t.request, f"Launching {instance.name}. It shows as running once its pod is ready.")
    return redirect("console:instance_detail", t.tenant.slug, instance.pk)


@tenant_page(Perm.INSTANCES_WRITE)
def launch_options(t: TenantPage) -> HttpResponse:
    """The launch form's region-dependent part (instance types and images), for HTMX."""
    return t.render("console/instances/_launch_options.html", _launch_context(t, t.request.GET))


# --- one instance --------------------------------------------------------------------------------------


def _status_context(t: TenantPage, instance: Instance) -> dict[str, Any]:
    events = list(selectors.events_of(instance=instance).order_by("-created_at", "-id")[:50])
    fingerprint = poll_fingerprint(
        instance.name,
        instance.state,
        instance.desired_state,
        instance.failure_reason,
        instance.state_message,
        instance.connection,
        events[0].pk if events else None,
    )
    can_act = t.can(Perm.INSTANCES_WRITE)
    # A cluster's node is acted on through its cluster (the service refuses it alone: 409 cluster_node).
    cluster = instance.cluster if instance.cluster_id is not None else None
    actions = allowed_actions(State(instance.state)) if can_act and cluster is None else []
    return {
        "instance": instance,
        "cluster": cluster,
        "events": events,
        "actions": actions,
        "fingerprint": fingerprint,
        "poll_url": reverse("console:instance_status", args=[t.tenant.slug, instance.pk])
        + f"?v={fingerprint}",
        "poll_trigger": POLL_TRIGGER,
    }


@tenant_page(Perm.INSTANCES_READ)
def instance_detail(t: TenantPage, instance_id: UUID) -> HttpResponse:
    instance = _instance(t, instance_id)
    context = _status_context(t, instance)
    context["attachments"] = list(instance.volume_attachments.all())
    return t.render("console/instances/detail.html", context)


@tenant_page(Perm.INSTANCES_READ)
def instance_status(t: TenantPage, instance_id: UUID) -> HttpResponse:
    """The instance page's live part, polled by HTMX: 204 while nothing changed."""
    context = _status_context(t, _instance(t, instance_id))
    if unchanged(t.request, context["fingerprint"]):
        return HttpResponse(status=204)
    return t.render("console/instances/_status.html", context)


@tenant_page(Perm.INSTANCES_READ)
def instance_logs(t: TenantPage, instance_id: UUID) -> HttpResponse:
    """The pod's last 200 log lines from the Kubernetes logs API; "No logs yet" on any failure."""
    instance = _instance(t, instance_id)
    log = selectors.pod_log_tail(instance=instance) if instance.state != State.TERMINATED else None
    template = "console/instances/_logs.html" if t.request.htmx else "console/instances/logs.html"
    return t.render(template, {"instance": instance, "log": log})


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def instance_action(t: TenantPage, instance_id: UUID, action: str) -> HttpResponse:
    """GET: the confirmation page (works without JavaScript). POST: do it, through the service."""
    try:
        act = Action(action)
    except ValueError as exc:
        raise Http404("Not found.") from exc
    instance = _instance(t, instance_id)
    context: dict[str, Any] = {"instance": instance, "action": act.value, "explanation": ACTION_TEXT[act]}
    if act == Action.TERMINATE:  # terminate asks whether the attached volumes go too (default: keep)
        context["attachments"] = [
            a for a in instance.volume_attachments.all() if a.volume.state in ATTACHABLE
        ]
    # Only terminate reads the box; it is unchecked unless the person ticks it.
    delete_volumes = act == Action.TERMINATE and t.request.POST.get("delete_volumes") == "on"
    context["delete_volumes"] = delete_volumes
    if t.request.method != "POST":
        return t.render("console/instances/confirm.html", context)
    try:
        t.require_status(cleanup=act in (Action.STOP, Action.TERMINATE))
        services.instance_act(actor=t.user, instance=instance, action=act, delete_volumes=delete_volumes)
    except DomainError as exc:
        context["error"] = exc.message
        return t.render("console/instances/confirm.html", context, status=exc.status_code)
    verb = {"stop": "Stopping", "start": "Starting", "restart": "Restarting", "terminate": "Terminating"}
    messages.success(t.request, f"{verb[act.value]} {instance.name}.")
    return redirect("console:instance_detail", t.tenant.slug, instance.pk)
