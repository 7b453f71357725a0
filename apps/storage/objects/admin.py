from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.storage.admin_actions import ADMIN_REASON, run_each
from apps.storage.objects import services
from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount


class _NoRowWrites(admin.ModelAdmin):
    """Rows that mirror the S3 service: never added, edited or deleted here (that would leave the bucket or
    key on the service, unaudited); deletes go through the services in the actions below."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ObjectStorageAccount)
class ObjectStorageAccountAdmin(_NoRowWrites):
    list_display = ["tenant", "prefix", "iam_user", "keys_suspended_at", "writes_blocked_at", "created_at"]
    list_filter = ["keys_suspended_at", "writes_blocked_at"]
    # Never the presign key's (encrypted) secret.
    readonly_fields = (
        "tenant",
        "prefix",
        "iam_user",
        "presign_access_key_id",
        "keys_suspended_at",
        "keys_suspended_reason",
        "writes_blocked_at",
        "created_at",
        "closed_at",
    )
    fields = readonly_fields


@admin.action(description="Delete selected buckets (only empty ones; through the storage service)")
def delete_empty_buckets(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Bucket]) -> None:
    run_each(
        modeladmin,
        request,
        queryset.filter(deleted_at__isnull=True).select_related("tenant").order_by("pk"),
        lambda actor, bucket: services.bucket_delete(actor=actor, bucket=bucket, reason=ADMIN_REASON),
        "Buckets deleted",
    )


@admin.register(Bucket)
class BucketAdmin(_NoRowWrites):
    list_display = [
        "name",
        "tenant",
        "physical_name",
        "size_bytes",
        "object_count",
        "created_at",
        "deleted_at",
    ]
    list_filter = ["deleted_at"]
    search_fields = ["name", "physical_name", "tenant__slug"]
    readonly_fields = [f.name for f in Bucket._meta.fields]
    actions = [delete_empty_buckets]


@admin.action(description="Revoke selected access keys (deleted on the storage service)")
def revoke_access_keys(modeladmin: Any, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
    run_each(
        modeladmin,
        request,
        queryset.filter(revoked_at__isnull=True).select_related("tenant").order_by("pk"),
        lambda actor, key: services.access_key_revoke(
            actor=actor, key=key, reason="revoked by staff in the admin"
        ),
        "Access keys revoked",
    )


@admin.register(AccessKey)
class AccessKeyAdmin(_NoRowWrites):
    list_display = ["access_key_id", "name", "tenant", "created_at", "suspended_at", "revoked_at"]
    search_fields = ["access_key_id", "tenant__slug"]
    readonly_fields = [f.name for f in AccessKey._meta.fields]
    actions = [revoke_access_keys]
