"""SSH key pages: the tenant's keys (shared, and the caller's private ones), adding a key, deleting one.

Input is checked by the API's serializer and the key by the same parser (apps.accounts.ssh_keys) through
apps.accounts.services, so a pasted key is refused here exactly as the API refuses it, on the field.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect

from apps.accounts import services as account_services
from apps.accounts.api.serializers import SshKeyCreateSerializer
from apps.accounts.models import SshKey
from apps.console.views.page_helpers import validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError
from apps.tenants import selectors as account_selectors
from apps.tenants.roles import Perm


def _keys(t: TenantPage) -> list[SshKey]:
    return list(
        account_selectors.ssh_keys_visible_to(membership=t.membership)
        .select_related("created_by")
        .order_by("name", "id")
    )


@tenant_page(Perm.INSTANCES_READ, methods=("GET", "POST"), post_perm=Perm.INSTANCES_WRITE)
def ssh_keys(t: TenantPage) -> HttpResponse:
    form: dict[str, Any] = {"name": "", "public_key": "", "private": False}
    if t.request.method == "POST":
        post = t.request.POST
        form = {
            "name": post.get("name", "").strip(),
            "public_key": post.get("public_key", "").strip(),
            "private": post.get("private") == "on",
        }
        try:
            t.require_status()
            data = validated(SshKeyCreateSerializer, form)
            key = account_services.ssh_key_create(actor=t.user, tenant=t.tenant, **data)
        except DomainError as exc:
            context = {"keys": _keys(t), "form": form, "error": exc.message, "field_errors": exc.fields}
            return t.render("console/ssh_keys/list.html", context, status=exc.status_code)
        messages.success(t.request, f"Added the key {key.name} ({key.fingerprint}).")
        return redirect("console:ssh_keys", t.tenant.slug)
    return t.render("console/ssh_keys/list.html", {"keys": _keys(t), "form": form, "field_errors": {}})


@tenant_page(Perm.INSTANCES_WRITE, methods=("GET", "POST"))
def ssh_key_delete(t: TenantPage, ssh_key_id: UUID) -> HttpResponse:
    """GET: confirm. POST: delete (running instances keep the key they started with)."""
    key = account_selectors.ssh_keys_visible_to(membership=t.membership).filter(pk=ssh_key_id).first()
    if key is None:
        raise Http404("Not found.")
    if t.request.method != "POST":
        return t.render("console/ssh_keys/delete.html", {"key": key})
    try:
        t.require_status(cleanup=True)
        account_services.ssh_key_delete(actor=t.user, key=key)
    except DomainError as exc:
        return t.render("console/ssh_keys/delete.html", {"key": key, "error": exc.message}, exc.status_code)
    messages.success(t.request, f"Deleted the key {key.name}.")
    return redirect("console:ssh_keys", t.tenant.slug)
