"""Volume pages: the list with a create form, a volume's page with its timeline, grow and rename forms, and
deletion with confirmation.

Writes go through apps.storage.services (the API's service layer) after the API's own serializers, so a
refusal here is the API's refusal with the same message, on the field it names. While a volume is creating,
resizing or deleting, its part of the page polls with HTMX every 2 s (204 while nothing changed, like the
instance pages) and stops once every volume shown has settled.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from apps.catalog import selectors as catalog
from apps.catalog.models import StorageAccessMode
from apps.console.views.page_helpers import validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core import tags as core_tags
from apps.core.errors import DomainError
from apps.storage import selectors, services
from apps.storage.api.serializers import VolumeCreateSerializer, VolumeUpdateSerializer
from apps.storage.models import Volume, VolumeAttachment, VolumeState
from apps.tenants.roles import Perm

POLL_TRIGGER = "every 2s"
# States the operator is still working on: the page polls until none is shown.
TRANSITIONAL = frozenset({VolumeState.CREATING, VolumeState.RESIZING, VolumeState.DELETING})
ACCESS_TEXT: dict[str, str] = {
    StorageAccessMode.READ_WRITE_ONCE: "one instance at a time",
    StorageAccessMode.READ_WRITE_MANY: "several instances",
}


def access_text(volume: Volume) -> str:
    return ACCESS_TEXT.get(volume.access_mode, volume.access_mode)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def _volume(t: TenantPage, volume_id: UUID) -> Volume:
    volume = selectors.volumes_of(tenant=t.tenant).filter(pk=volume_id).first()
    if volume is None:
        raise Http404("Not found.")
    return volume


def live_attachments(volume: Volume) -> list[VolumeAttachment]:
    """What `volumes_of` prefetched: the attachments to instances that are not terminated."""
    return list(getattr(volume, "live_attachments", []))


def _describe(volume: Volume) -> Volume:
    volume.access_text = access_text(volume)  # type: ignore[attr-defined]
    return volume


# --- list and create -----------------------------------------------------------------------------------


def _table_context(t: TenantPage) -> dict[str, Any]:
    volumes = [
        _describe(v)
        for v in selectors.volumes_of(tenant=t.tenant)
        .exclude(state=VolumeState.DELETED)
        .order_by("name", "id")
    ]
    fingerprint = _fingerprint(
        [
            (
                str(v.pk),
                v.name,
                v.state,
                v.size_gib,
                [(str(a.instance_id), a.mount_path) for a in live_attachments(v)],
            )
            for v in volumes
        ]
    )
    return {
        "volumes": volumes,
        "fingerprint": fingerprint,
        "polling": any(v.state in TRANSITIONAL for v in volumes),
        "poll_url": f"{reverse('console:volumes_table', args=[t.tenant.slug])}?v={fingerprint}",
        "poll_trigger": POLL_TRIGGER,
    }


def _list_context(t: TenantPage, form: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    regions = list(catalog.regions())
    zones = catalog.region_zones()
    return {
        **_table_context(t),
        "regions": regions,
        "zones": [{"region": r.slug, "zone": z} for r in regions for z in zones.get(r.pk, [])],
        "form": form
        or {
            "name": "",
            "region": regions[0].slug if regions else "",
            "size_gib": "100",
            "tags": "",
            "zone": "",
        },
        "price_per_gib_hour": settings.VOLUME_PRICE_PER_GIB_HOUR,
        "field_errors": {},
        **extra,
    }


@tenant_page(Perm.STORAGE_READ, methods=("GET", "POST"), post_perm=Perm.STORAGE_WRITE)
def volumes(t: TenantPage) -> HttpResponse:
    if t.request.method != "POST":
        return t.render("console/storage/volumes.html", _list_context(t))
    post = t.request.POST
    form = {
        "name": post.get("name", "").strip(),
        "region": post.get("region", ""),
        "size_gib": post.get("size_gib", "").strip(),
        "tags": post.get("tags", ""),
        "zone": post.get("zone", ""),
    }
    try:
        t.require_status()
        data = validated(VolumeCreateSerializer, {**form, "tags": core_tags.parse_lines(form["tags"])})
        volume = services.volume_create(actor=t.user, tenant=t.tenant, **data)
    except DomainError as exc:
        context = _list_context(t, form, error=exc.message, field_errors=exc.fields)
        return t.render("console/storage/volumes.html", context, status=exc.status_code)
    messages.success(t.request, f"Creating the volume {volume.name} ({volume.size_gib} GiB).")
    return redirect("console:volume_detail", t.tenant.slug, volume.pk)


@tenant_page(Perm.STORAGE_READ)
def volumes_table(t: TenantPage) -> HttpResponse:
    """The list's table alone, polled by HTMX while a volume is changing: 204 while nothing changed."""
    context = _table_context(t)
    if t.request.GET.get("v") == context["fingerprint"]:
        return HttpResponse(status=204)
    return t.render("console/storage/_volumes_table.html", context)


# --- one volume ----------------------------------------------------------------------------------------


def _status_context(t: TenantPage, volume: Volume) -> dict[str, Any]:
    events = list(selectors.events_of(volume=volume).order_by("-created_at", "-id")[:50])
    attachments = live_attachments(volume)
    fingerprint = _fingerprint(
        volume.name,
        volume.state,
        volume.state_message,
        volume.size_gib,
        [(str(a.instance_id), a.mount_path) for a in attachments],
        events[0].pk if events else None,
    )
    return {
        "volume": _describe(volume),
        "attachments": attachments,
        "events": events,
        "fingerprint": fingerprint,
        "polling": volume.state in TRANSITIONAL,
        "poll_url": reverse("console:volume_status", args=[t.tenant.slug, volume.pk]) + f"?v={fingerprint}",
        "poll_trigger": POLL_TRIGGER,
    }


def _detail_context(t: TenantPage, volume: Volume, **extra: Any) -> dict[str, Any]:
    return {
        **_status_context(t, volume),
        "editable": volume.state not in (VolumeState.DELETING, VolumeState.DELETED),
        "resize_form": {"size_gib": str(volume.size_gib)},
        "rename_form": {"name": volume.name},
        "field_errors": {},
        **extra,
    }


@tenant_page(Perm.STORAGE_READ)
def volume_detail(t: TenantPage, volume_id: UUID) -> HttpResponse:
    return t.render("console/storage/volume_detail.html", _detail_context(t, _volume(t, volume_id)))


@tenant_page(Perm.STORAGE_READ)
def volume_status(t: TenantPage, volume_id: UUID) -> HttpResponse:
    """The volume page's live part (state, attachments, timeline), polled by HTMX while it changes."""
    context = _status_context(t, _volume(t, volume_id))
    if t.request.GET.get("v") == context["fingerprint"]:
        return HttpResponse(status=204)
    return t.render("console/storage/_volume_status.html", context)


@tenant_page(Perm.STORAGE_WRITE, methods=("POST",))
def volume_resize(t: TenantPage, volume_id: UUID) -> HttpResponse:
    """Grow only: a smaller size is the service's 400 on the size field."""
    volume = _volume(t, volume_id)
    form = {"size_gib": t.request.POST.get("size_gib", "").strip()}
    try:
        t.require_status()
        data = validated(VolumeUpdateSerializer, form)
        volume = services.volume_resize(actor=t.user, volume=volume, size_gib=data.get("size_gib"))
    except DomainError as exc:
        context = _detail_context(
            t, _volume(t, volume_id), resize_form=form, error=exc.message, field_errors=exc.fields
        )
        return t.render("console/storage/volume_detail.html", context, status=exc.status_code)
    messages.success(t.request, f"Growing {volume.name} to {volume.size_gib} GiB.")
    return redirect("console:volume_detail", t.tenant.slug, volume.pk)


@tenant_page(Perm.STORAGE_WRITE, methods=("POST",))
def volume_rename(t: TenantPage, volume_id: UUID) -> HttpResponse:
    volume = _volume(t, volume_id)
    form = {"name": t.request.POST.get("name", "").strip()}
    try:
        t.require_status()
        data = validated(VolumeUpdateSerializer, form)
        volume = services.volume_rename(actor=t.user, volume=volume, name=data.get("name"))
    except DomainError as exc:
        context = _detail_context(
            t, _volume(t, volume_id), rename_form=form, error=exc.message, field_errors=exc.fields
        )
        return t.render("console/storage/volume_detail.html", context, status=exc.status_code)
    messages.success(t.request, f"Renamed the volume to {volume.name}.")
    return redirect("console:volume_detail", t.tenant.slug, volume.pk)


@tenant_page(Perm.STORAGE_WRITE, methods=("GET", "POST"))
def volume_delete(t: TenantPage, volume_id: UUID) -> HttpResponse:
    """GET: confirm. POST: delete; 409 volume_attached while an instance that is not terminated mounts it."""
    volume = _describe(_volume(t, volume_id))
    context: dict[str, Any] = {"volume": volume, "attachments": live_attachments(volume)}
    if t.request.method != "POST":
        return t.render("console/storage/volume_delete.html", context)
    try:
        t.require_status(cleanup=True)
        services.volume_delete(actor=t.user, volume=volume)
    except DomainError as exc:
        context["error"] = exc.message
        return t.render("console/storage/volume_delete.html", context, status=exc.status_code)
    messages.success(t.request, f"Deleting the volume {volume.name}. Its data is removed with it.")
    return redirect("console:volumes", t.tenant.slug)
