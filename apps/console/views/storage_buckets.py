"""Object storage pages: buckets (list, create, presigned URLs, delete with confirmation) and the tenant's S3
access keys (list, create with the secret shown once, revoke with confirmation).

Writes go through apps.storage.objects.services after the API's serializers, so the console refuses what the
API refuses, with the same messages on the same fields. When the S3 service is not configured or does not
answer, the services raise StorageNotConfigured / StorageUnavailable (503): the page shows their message.
Lists read only the database (sizes are the last usage sample), so they work while the service is down.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.db.models import F
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from apps.console.views.page_helpers import validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core import build_status
from apps.core import tags as core_tags
from apps.core.errors import DomainError
from apps.storage.objects import s3, selectors, services
from apps.storage.objects.api.serializers import (
    AccessKeyCreateSerializer,
    BucketCreateSerializer,
    PresignSerializer,
)
from apps.storage.objects.models import AccessKey, Bucket
from apps.tenants.roles import Perm

NOT_CONFIGURED = "Object storage is not configured on this installation."
DEFAULT_PRESIGN_SECONDS = "3600"


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _buckets(t: TenantPage) -> list[Bucket]:
    return list(selectors.buckets_of(t.tenant).select_related("created_by").order_by("name"))


def _bucket(t: TenantPage, bucket_name: str) -> Bucket:
    bucket = (
        selectors.buckets_of(t.tenant).select_related("created_by", "tenant").filter(name=bucket_name).first()
    )
    if bucket is None:
        raise Http404("Not found.")
    return bucket


def _service_note() -> str:
    """Why writes cannot work now, or "" (whether the service answers is only known when it is called; while
    `make run` still builds its local server, the bring-up's status says so)."""
    if not s3.configured():
        return (
            f"{NOT_CONFIGURED} Buckets and access keys cannot be created until staff configure it "
            "(docs/storage.md)."
        )
    note = build_status.object_storage_note()
    return f"{note} Buckets and access keys can be created once it is up." if note else ""


def _access_note(t: TenantPage) -> str:
    """What the tenant's keys may not do now (apps/storage/objects/access.py), or ""."""
    account = selectors.account_of(t.tenant)
    if account is None:
        return ""
    if account.keys_suspended_at is not None:
        return (
            f"Your access keys and presigned URLs are suspended ({account.keys_suspended_reason}); your "
            "data is kept, and they work again once the tenant is active and in funds."
        )
    if account.writes_blocked_at is not None:
        return (
            "Your buckets hold the whole object storage quota: nothing new can be written until you delete "
            "objects or the quota is raised (reading and deleting still work)."
        )
    return ""


# --- buckets -------------------------------------------------------------------------------------------


@tenant_page(Perm.STORAGE_READ, methods=("GET", "POST"), post_perm=Perm.STORAGE_WRITE)
def buckets(t: TenantPage) -> HttpResponse:
    form = {"name": "", "tags": ""}
    if t.request.method == "POST":
        form = {"name": t.request.POST.get("name", "").strip(), "tags": t.request.POST.get("tags", "")}
        try:
            t.require_status()
            data = validated(BucketCreateSerializer, {**form, "tags": core_tags.parse_lines(form["tags"])})
            bucket = services.bucket_create(
                actor=t.user, tenant=t.tenant, name=data["name"], tags=data["tags"]
            )
        except DomainError as exc:
            context = {
                "buckets": _buckets(t),
                "form": form,
                "service_note": _service_note(),
                "access_note": _access_note(t),
                "error": exc.message,
                "field_errors": exc.fields,
            }
            return t.render("console/storage/buckets.html", context, status=exc.status_code)
        messages.success(t.request, f"Created the bucket {bucket.name} ({bucket.physical_name}).")
        return redirect("console:bucket_detail", t.tenant.slug, bucket.name)
    context = {
        "buckets": _buckets(t),
        "form": form,
        "service_note": _service_note(),
        "access_note": _access_note(t),
        "field_errors": {},
    }
    return t.render("console/storage/buckets.html", context)


def _presign_form(params: Any = None) -> dict[str, str]:
    params = params or {}
    return {
        "method": params.get("method", "get"),
        "key": params.get("key", ""),
        "expires_in": params.get("expires_in", DEFAULT_PRESIGN_SECONDS).strip() or DEFAULT_PRESIGN_SECONDS,
        "content_length": params.get("content_length", "").strip(),
    }


@tenant_page(Perm.STORAGE_READ, methods=("GET", "POST"), post_perm=Perm.STORAGE_WRITE)
def bucket_detail(t: TenantPage, bucket_name: str) -> HttpResponse:
    """The bucket's facts and, for writers, a form that presigns a URL for one object (POST)."""
    bucket = _bucket(t, bucket_name)
    context: dict[str, Any] = {
        "bucket": bucket,
        "service_note": _service_note(),
        "access_note": _access_note(t),
        "field_errors": {},
    }
    if t.request.method != "POST":
        return t.render("console/storage/bucket_detail.html", {**context, "form": _presign_form()})
    form = _presign_form(t.request.POST)
    context["form"] = form
    try:
        t.require_status()
        # The size is for uploads only; a download form may carry the field empty.
        sent = {k: v for k, v in form.items() if k != "content_length" or (v and form["method"] == "put")}
        data = validated(PresignSerializer, sent)
        url = services.bucket_presign(
            bucket=bucket,
            method=data["method"],
            key=data["key"],
            expires_in=data["expires_in"],
            content_length=data.get("content_length"),
        )
    except DomainError as exc:
        context.update(error=exc.message, field_errors=exc.fields)
        return t.render("console/storage/bucket_detail.html", context, status=exc.status_code)
    context["presigned"] = {
        "method": data["method"].upper(),
        "content_length": data.get("content_length"),
        "key": data["key"],
        "url": url,
        "expires_at": timezone.now() + timedelta(seconds=data["expires_in"]),
    }
    # The URL is a credential for one object until it expires: not cached.
    return _no_store(t.render("console/storage/bucket_detail.html", context))


@tenant_page(Perm.STORAGE_WRITE, methods=("GET", "POST"))
def bucket_delete(t: TenantPage, bucket_name: str) -> HttpResponse:
    """GET: confirm, with "delete all objects too". POST: delete; 409 bucket_not_empty without it."""
    bucket = _bucket(t, bucket_name)
    context: dict[str, Any] = {"bucket": bucket, "force": False}
    if t.request.method != "POST":
        return t.render("console/storage/bucket_delete.html", context)
    context["force"] = t.request.POST.get("force") == "on"
    try:
        t.require_status(cleanup=True)
        services.bucket_delete(actor=t.user, bucket=bucket, force=context["force"])
    except DomainError as exc:
        context.update(error=exc.message, code=exc.code)
        return t.render("console/storage/bucket_delete.html", context, status=exc.status_code)
    messages.success(t.request, f"Deleted the bucket {bucket.name}.")
    return redirect("console:buckets", t.tenant.slug)


# --- access keys ---------------------------------------------------------------------------------------


def _keys(t: TenantPage) -> list[AccessKey]:
    return list(
        selectors.access_keys_of(t.tenant, include_revoked=True)
        .select_related("created_by")
        .order_by(F("revoked_at").asc(nulls_first=True), "-created_at")  # active keys first
    )


def _example_bucket(t: TenantPage) -> str:
    first = selectors.buckets_of(t.tenant).order_by("name").first()
    return first.physical_name if first else "BUCKET"


@tenant_page(Perm.STORAGE_READ, methods=("GET", "POST"), post_perm=Perm.STORAGE_WRITE)
def access_keys(t: TenantPage) -> HttpResponse:
    form = {"name": ""}
    if t.request.method == "POST":
        form = {"name": t.request.POST.get("name", "").strip()}
        try:
            t.require_status()
            data = validated(AccessKeyCreateSerializer, form)
            created = services.access_key_create(actor=t.user, tenant=t.tenant, name=data["name"])
            conf = s3.config()
        except DomainError as exc:
            context = {
                "keys": _keys(t),
                "form": form,
                "service_note": _service_note(),
                "access_note": _access_note(t),
                "error": exc.message,
                "field_errors": exc.fields,
            }
            return t.render("console/storage/access_keys.html", context, status=exc.status_code)
        created_context: dict[str, Any] = {
            "key": created.key,
            "secret": created.secret_access_key,
            "endpoint_url": conf.public_endpoint_url,
            "region": conf.region,
            "example_bucket": _example_bucket(t),
        }
        # The only response that ever carries the secret: not cached, not stored, not in a redirect.
        return _no_store(t.render("console/storage/access_key_created.html", created_context))
    context = {
        "keys": _keys(t),
        "form": form,
        "service_note": _service_note(),
        "access_note": _access_note(t),
        "field_errors": {},
    }
    return t.render("console/storage/access_keys.html", context)


@tenant_page(Perm.STORAGE_WRITE, methods=("GET", "POST"))
def access_key_revoke(t: TenantPage, access_key_id: UUID) -> HttpResponse:
    key = selectors.access_keys_of(t.tenant, include_revoked=True).filter(pk=access_key_id).first()
    if key is None:
        raise Http404("Not found.")
    context: dict[str, Any] = {"key": key}
    if t.request.method != "POST":
        return t.render("console/storage/access_key_revoke.html", context)
    try:
        t.require_status(cleanup=True)
        services.access_key_revoke(actor=t.user, key=key)
    except DomainError as exc:
        context["error"] = exc.message
        return t.render("console/storage/access_key_revoke.html", context, status=exc.status_code)
    messages.success(t.request, f"Revoked the access key {key.name} ({key.access_key_id}).")
    return redirect("console:access_keys", t.tenant.slug)
