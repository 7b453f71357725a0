from typing import Any

from rest_framework import serializers

from apps.core.serializers import StrictInputSerializer
from apps.core.tags import TagChangesField, TagsField
from apps.storage.models import Volume


class VolumeSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.slug", read_only=True)
    multi_attach = serializers.BooleanField(
        read_only=True,
        help_text="True when the storage class lets several instances mount the volume at once "
        "(ReadWriteMany); a ReadWriteOnce volume is attached to one instance at a time.",
    )
    price_per_hour = serializers.DecimalField(
        max_digits=16, decimal_places=4, read_only=True, help_text="size_gib x price_per_gib_hour."
    )
    attachments = serializers.SerializerMethodField(
        help_text="Instances that are not terminated and mount this volume."
    )
    tags = TagsField(read_only=True, help_text="Key/value labels.")
    zone = serializers.CharField(
        read_only=True,
        help_text="The availability zone it lives in (instances using it run there); empty until it is "
        "created in one or attached to its first instance (docs/networking.md).",
    )

    class Meta:
        model = Volume
        fields = [
            "id",
            "name",
            "tags",
            "region",
            "zone",
            "size_gib",
            "storage_class",
            "access_mode",
            "multi_attach",
            "state",
            "state_message",
            "price_per_gib_hour",
            "price_per_hour",
            "attachments",
            "created_at",
            "updated_at",
            "deleted_at",
        ]
        read_only_fields = fields

    def get_attachments(self, volume: Volume) -> list[dict[str, Any]]:
        return [
            {"instance_id": str(a.instance_id), "instance_name": a.instance.name, "mount_path": a.mount_path}
            for a in getattr(volume, "live_attachments", [])
        ]


class VolumeCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=63, help_text="DNS-safe, unique per tenant and region.")
    region = serializers.CharField(max_length=40)
    size_gib = serializers.IntegerField(min_value=1, max_value=65536)
    tags = TagsField(required=False, default=dict)
    zone = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="One of the region's zones (GET /regions); omitted: the zone of the first instance it is "
        "attached to.",
    )


class VolumeUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=63, required=False)
    size_gib = serializers.IntegerField(min_value=1, max_value=65536, required=False, help_text="Grow only.")
    tags = TagChangesField(
        required=False, help_text="A merge patch: a string sets a key, null removes it, others are kept."
    )
