from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.storage import services
from apps.storage.admin_actions import ADMIN_REASON, run_each
from apps.storage.models import Volume, VolumeAttachment, VolumeEvent


class VolumeAttachmentInline(admin.TabularInline):
    model = VolumeAttachment
    extra = 0
    can_delete = False
    fields = ("instance", "mount_path", "delete_with_instance", "created_at")
    readonly_fields = fields


class VolumeEventInline(admin.TabularInline):
    model = VolumeEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "name", "size_gib", "from_state", "to_state", "actor_label", "message")
    readonly_fields = fields


@admin.action(description="Delete selected volumes (their claims too; not while attached)")
def delete_volumes(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Volume]) -> None:
    run_each(
        modeladmin,
        request,
        queryset.select_related("tenant", "region").order_by("pk"),
        lambda actor, volume: services.volume_delete(actor=actor, volume=volume, reason=ADMIN_REASON),
        "Volumes whose deletion began",
    )


@admin.register(Volume)
class VolumeAdmin(admin.ModelAdmin):
    """Read-only: volumes change through the API so that quota, billing and the cluster agree. Deleting goes
    through volume_delete (the action), never by deleting the row, which would leave the claim behind."""

    list_display = ("name", "tenant", "region", "size_gib", "access_mode", "state", "created_at")
    list_filter = ("state", "region", "access_mode")
    search_fields = ("name", "id", "tenant__slug")
    inlines = [VolumeAttachmentInline, VolumeEventInline]
    actions = [delete_volumes]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
