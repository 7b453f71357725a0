from django.contrib import admin

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


@admin.register(Volume)
class VolumeAdmin(admin.ModelAdmin):
    """Read-only: volumes change through the API so that quota, billing and the cluster agree."""

    list_display = ("name", "tenant", "region", "size_gib", "access_mode", "state", "created_at")
    list_filter = ("state", "region", "access_mode")
    search_fields = ("name", "id", "tenant__slug")
    inlines = [VolumeAttachmentInline, VolumeEventInline]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
