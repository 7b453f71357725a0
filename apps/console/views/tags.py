"""Editing a resource's tags from its page (instances, clusters, volumes, buckets): GET shows the whole set,
one `key=value` a line; POST saves it through the resource's service, as the merge patch from the tags
shown to the ones typed (apps/core/tags.py), so the console refuses what the API refuses, with the same
message on the tags field. A cluster's nodes take its tags; a node's own page links to its cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from apps.console.views.page_helpers import form_error
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core import tags as core_tags
from apps.core.errors import DomainError
from apps.instances import cluster_selectors, cluster_services
from apps.instances import selectors as instance_selectors
from apps.instances import services as instance_services
from apps.storage import selectors as volume_selectors
from apps.storage import services as volume_services
from apps.storage.models import VolumeState
from apps.storage.objects import selectors as bucket_selectors
from apps.storage.objects import services as bucket_services
from apps.tenants.roles import Perm


def _edit(
    t: TenantPage,
    *,
    kind: str,
    name: str,
    current: dict[str, str],
    back: str,
    save: Callable[[dict[str, str | None]], Any],
    cleanup: bool,
) -> HttpResponse:
    context: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "back": back,
        "tags_text": core_tags.as_lines(current),
        "max_tags": core_tags.MAX_TAGS,
        "field_errors": {},
    }
    if t.request.method != "POST":
        return t.render("console/tags/edit.html", context)
    typed = t.request.POST.get("tags", "")
    try:
        # Labels cost nothing: a suspended tenant may still tag its compute, as the API's PATCH allows.
        t.require_status(cleanup=cleanup)
        save(core_tags.replacement(current, core_tags.parse_lines(typed)))
    except DomainError as exc:
        context.update(tags_text=typed, **form_error(exc))
        return t.render("console/tags/edit.html", context, status=exc.status_code)
    messages.success(t.request, f"Saved the tags of {kind} {name}.")
    return redirect(back)


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def instance_tags(t: TenantPage, instance_id: UUID) -> HttpResponse:
    instance = instance_selectors.instances_of(tenant=t.tenant).filter(pk=instance_id).first()
    if instance is None:
        raise Http404("Not found.")
    return _edit(
        t,
        kind="instance",
        name=instance.name,
        current=instance.tags,
        back=reverse("console:instance_detail", args=[t.tenant.slug, instance.pk]),
        save=lambda patch: instance_services.instance_tags_update(
            actor=t.user, instance=instance, changes=patch
        ),
        cleanup=True,
    )


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def cluster_tags(t: TenantPage, cluster_id: UUID) -> HttpResponse:
    cluster = cluster_selectors.cluster_of(tenant=t.tenant, cluster_id=cluster_id)
    if cluster is None:
        raise Http404("Not found.")
    return _edit(
        t,
        kind="cluster",
        name=cluster.name,
        current=cluster.tags,
        back=reverse("console:cluster_detail", args=[t.tenant.slug, cluster.pk]),
        save=lambda patch: cluster_services.cluster_tags_update(actor=t.user, cluster=cluster, changes=patch),
        cleanup=True,
    )


@tenant_page(Perm.STORAGE_WRITE, methods=("GET", "POST"))
def volume_tags(t: TenantPage, volume_id: UUID) -> HttpResponse:
    volume = (
        volume_selectors.volumes_of(tenant=t.tenant)
        .exclude(state=VolumeState.DELETED)
        .filter(pk=volume_id)
        .first()
    )
    if volume is None:
        raise Http404("Not found.")
    return _edit(
        t,
        kind="volume",
        name=volume.name,
        current=volume.tags,
        back=reverse("console:volume_detail", args=[t.tenant.slug, volume.pk]),
        save=lambda patch: volume_services.volume_tags_update(actor=t.user, volume=volume, changes=patch),
        cleanup=False,
    )


@tenant_page(Perm.STORAGE_WRITE, methods=("GET", "POST"))
def bucket_tags(t: TenantPage, bucket_name: str) -> HttpResponse:
    bucket = bucket_selectors.buckets_of(t.tenant).select_related("tenant").filter(name=bucket_name).first()
    if bucket is None:
        raise Http404("Not found.")
    return _edit(
        t,
        kind="bucket",
        name=bucket.name,
        current=bucket.tags,
        back=reverse("console:bucket_detail", args=[t.tenant.slug, bucket.name]),
        save=lambda patch: bucket_services.bucket_tags_update(actor=t.user, bucket=bucket, changes=patch),
        cleanup=False,
    )
