from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializers import StrictInputSerializer
from apps.core.tags import TagChangesField, TagsField
from apps.instances.api.representation import InstanceListSerializer, instance_json
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import State, allowed_actions
from apps.storage.models import VolumeAttachment


class AttachmentSerializer(serializers.ModelSerializer):
    """A volume mounted into the instance."""

    volume_id = serializers.UUIDField(source="volume.id", read_only=True)
    name = serializers.CharField(source="volume.name", read_only=True)
    size_gib = serializers.IntegerField(source="volume.size_gib", read_only=True)
    access_mode = serializers.CharField(source="volume.access_mode", read_only=True)
    state = serializers.CharField(source="volume.state", read_only=True)

    class Meta:
        model = VolumeAttachment
        fields = [
            "volume_id",
            "name",
            "mount_path",
            "size_gib",
            "access_mode",
            "state",
            "delete_with_instance",
        ]
        read_only_fields = fields


class InstanceConnectionSerializer(serializers.Serializer):
    """How to reach a running instance over SSH: empty ({}) until it first runs, and emptied again when
    it stops or is terminated."""

    host = serializers.CharField(required=False, help_text="Address of the node the instance runs on.")
    port = serializers.IntegerField(required=False, help_text="Its SSH port there.")
    user = serializers.CharField(required=False)
    ssh_command = serializers.CharField(required=False, help_text="e.g. ssh -p 30022 gpucloud@203.0.113.7")
    host_key = serializers.CharField(
        required=False,
        help_text="The instance's SSH host key (`ssh-ed25519 AAAA...`): the same across stop and start.",
    )
    known_hosts = serializers.CharField(
        required=False,
        help_text="Its line for a known_hosts file, e.g. `[203.0.113.7]:30022 ssh-ed25519 AAAA...`.",
    )


@extend_schema_field(InstanceConnectionSerializer)
class ConnectionField(serializers.JSONField):
    """The stored JSON as it is; the schema documents its keys (InstanceConnectionSerializer)."""


class InstanceSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.slug", read_only=True)
    instance_type = serializers.CharField(source="instance_type.slug", read_only=True)
    gpu_type = serializers.CharField(source="gpu_type.slug", read_only=True, allow_null=True, default=None)
    image = serializers.CharField(source="image_reference", read_only=True)
    ssh_key_ids: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(
        source="ssh_keys", many=True, read_only=True
    )
    env_names = serializers.SerializerMethodField(help_text="Names only: values may be secrets.")
    price_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4, read_only=True)
    cost_so_far = serializers.SerializerMethodField(
        help_text="Billed seconds x price, in the price's currency."
    )
    running_seconds = serializers.SerializerMethodField(help_text="Seconds spent in `running` (Ready).")
    billed_seconds = serializers.SerializerMethodField(
        help_text="Seconds billed: from each start of the instance's container on a node (Ready or not) "
        "until it was stopped, terminated, restarted or failed."
    )
    allowed_actions = serializers.SerializerMethodField()
    volumes = AttachmentSerializer(source="volume_attachments", many=True, read_only=True)
    connection = ConnectionField(read_only=True, help_text="Host, port and user once running.")
    cluster = serializers.UUIDField(
        source="cluster_id",
        read_only=True,
        allow_null=True,
        help_text="The cluster this instance is a node of (docs/clusters.md), or null.",
    )
    rank = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Its rank among the cluster's nodes (0 to N-1), or null."
    )
    tags = TagsField(read_only=True, help_text="Key/value labels; a cluster's node carries its cluster's.")
    zone = serializers.CharField(
        read_only=True,
        help_text="The availability zone it is pinned to (the launch's, or its volume's); empty: any zone.",
    )

    class Meta:
        model = Instance
        fields = [
            "id",
            "name",
            "tags",
            "state",
            "desired_state",
            "failure_reason",
            "state_message",
            "allowed_actions",
            "region",
            "zone",
            "instance_type",
            "gpu_type",
            "gpu_count",
            "vcpu",
            "memory_gib",
            "ephemeral_disk_gib",
            "image",
            "ssh_key_ids",
            "volumes",
            "env_names",
            "command",
            "auto_stop_after",
            "max_runtime",
            "price_per_hour",
            "cost_so_far",
            "running_seconds",
            "billed_seconds",
            "connection",
            "cluster",
            "rank",
            "created_at",
            "updated_at",
            "running_since",
            "billing_since",
            "state_changed_at",
            "stopped_at",
            "terminated_at",
        ]
        read_only_fields = fields
        list_serializer_class = InstanceListSerializer

    def to_representation(self, instance: Instance) -> dict[str, Any]:
        return instance_json(instance)

    def get_env_names(self, instance: Instance) -> list[str]:
        return sorted(instance.env)

    @extend_schema_field(serializers.DecimalField(max_digits=16, decimal_places=4))
    def get_cost_so_far(self, instance: Instance) -> str:
        return str(instance.cost_so_far())

    def get_running_seconds(self, instance: Instance) -> int:
        return instance.running_seconds()

    def get_billed_seconds(self, instance: Instance) -> int:
        return instance.billed_seconds()

    def get_allowed_actions(self, instance: Instance) -> list[str]:
        return allowed_actions(State(instance.state))


class StrictCharField(serializers.CharField):
    """A string and nothing else: DRF's CharField would turn 5 into "5" and hide a client's mistake."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class EnvField(serializers.DictField):
    child = StrictCharField(max_length=4096, allow_blank=True, trim_whitespace=False)


class VolumeMountSerializer(StrictInputSerializer):
    volume_id = serializers.UUIDField()
    mount_path = serializers.CharField(
        max_length=255, help_text="Absolute, not / and not a system directory (/etc, /usr ...)."
    )


class InstanceLaunchSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=63, required=False, help_text="DNS-safe; generated when omitted.")
    instance_type = serializers.CharField(max_length=40)
    region = serializers.CharField(max_length=40)
    image = serializers.CharField(
        max_length=255, help_text="A curated image slug, or a reference if allowed."
    )
    ssh_key_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, default=list, max_length=20
    )
    env = EnvField(required=False, default=dict)
    command = serializers.ListField(
        child=StrictCharField(max_length=4096, trim_whitespace=False),
        required=False,
        default=list,
        max_length=64,
    )
    auto_stop_after = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=60,
        max_value=90 * 24 * 3600,
        help_text="Seconds of running.",
    )
    max_runtime = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=60,
        max_value=90 * 24 * 3600,
        help_text="Seconds of running, in total.",
    )
    volumes = serializers.ListField(
        child=VolumeMountSerializer(),
        required=False,
        default=list,
        max_length=16,
        help_text="Volumes of the tenant in the same region to mount, e.g. "
        '[{"volume_id": "...", "mount_path": "/data"}].',
    )
    tags = TagsField(required=False, default=dict)
    zone = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        help_text="One of the region's availability zones (GET /regions); omitted: any zone, or its volumes' "
        "zone (docs/networking.md).",
    )


class InstanceUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=63, required=False)
    tags = TagChangesField(required=False)


class InstanceActionSerializer(StrictInputSerializer):
    pass


class InstanceEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")

    class Meta:
        model = InstanceEvent
        fields = [
            "id",
            "created_at",
            "kind",
            "name",
            "from_state",
            "to_state",
            "reason",
            "message",
            "billable",
            "actor",
            "request_id",
        ]
        read_only_fields = fields
