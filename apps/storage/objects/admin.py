from django.contrib import admin

from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount


@admin.register(ObjectStorageAccount)
class ObjectStorageAccountAdmin(admin.ModelAdmin):
    list_display = ["tenant", "prefix", "iam_user", "created_at"]
    readonly_fields = ["tenant", "prefix", "iam_user", "created_at"]


@admin.register(Bucket)
class BucketAdmin(admin.ModelAdmin):
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


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    list_display = ["access_key_id", "name", "tenant", "created_at", "revoked_at"]
    search_fields = ["access_key_id", "tenant__slug"]
    readonly_fields = [f.name for f in AccessKey._meta.fields]
