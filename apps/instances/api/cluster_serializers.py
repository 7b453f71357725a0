"""A cluster as the API shows it and the body that creates one (docs/clusters.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.serializers import StrictInputSerializer
from apps.core.tags import TagChangesField, TagsField
from apps.instances.api.serializers import (
    ConnectionField,
    EnvField,
    InstanceEventSerializer,
    StrictCharField,
    VolumeMountSerializer,
)
from apps.instances.cluster_services import MAX_NAME
from apps.instances.cluster_states import ClusterState, allowed_actions
from apps.instances.models import Cluster, Instance, OnNodeFailure, Placement
from apps.instances.states import State

PRICE_PLACES = Decimal("0.0001")
TIMER_MAX = 90 * 24 * 3600
# The states' values, for the schema's enums (ENUM_NAME_OVERRIDES in config/settings/base.py): an instance's
# (InstanceStateEnum, shown for a node too) and a cluster's (ClusterStateEnum).
INSTANCE_STATES = [s.value for s in State]
CLUSTER_STATES = [s.value for s in ClusterState]


class ClusterNodeSerializer(serializers.ModelSerializer):
    """One node: an instance of the tenant's (GET .../instances/{instance_id} shows all of it)."""

    instance_id = serializers.UUIDField(source="id", read_only=True)
    state = serializers.ChoiceField(choices=INSTANCE_STATES, read_only=True)
    connection = ConnectionField(read_only=True, help_text="Host, port and user once the node runs.")

    class Meta:
        model = Instance
        fields = ["rank", "instance_id", "name", "state", "connection"]
        read_only_fields = fields


class ClusterSerializer(serializers.ModelSerializer):
    region = serializers.CharField(source="region.slug", read_only=True)
    instance_type = serializers.CharField(source="instance_type.slug", read_only=True)
    image = serializers.CharField(source="image_reference", read_only=True)
    state = serializers.ChoiceField(choices=CLUSTER_STATES, read_only=True)
    env_names = serializers.SerializerMethodField(help_text="Names only: values may be secrets.")
    allowed_actions = serializers.SerializerMethodField()
    price_per_hour = serializers.DecimalField(
        max_digits=12, decimal_places=4, read_only=True, help_text="Per node."
    )
    cluster_price_per_hour = serializers.SerializerMethodField(
        help_text="The whole cluster's: node_count x price_per_hour."
    )
    block = serializers.CharField(
        read_only=True, help_text="The topology block admission placed it in; empty for placement any."
    )
    zone = serializers.CharField(
        read_only=True, help_text="The availability zone its nodes are pinned to (asked for, or its block's)."
    )
    nodes = serializers.SerializerMethodField(help_text="Its nodes by rank; each is an instance.")
    tags = TagsField(read_only=True, help_text="Key/value labels; every node carries them too.")

    class Meta:
        model = Cluster
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
            "instance_type",
            "node_count",
            "placement",
            "block",
            "zone",
            "on_node_failure",
            "image",
            "command",
            "env_names",
            "auto_stop_after",
            "max_runtime",
            "price_per_hour",
            "cluster_price_per_hour",
            "nodes",
            "created_at",
            "updated_at",
            "state_changed_at",
            "terminated_at",
        ]
        read_only_fields = fields

    def get_env_names(self, cluster: Cluster) -> list[str]:
        return sorted(cluster.env)

    def get_allowed_actions(self, cluster: Cluster) -> list[str]:
        return allowed_actions(cluster.state)

    @extend_schema_field(serializers.DecimalField(max_digits=16, decimal_places=4))
    def get_cluster_price_per_hour(self, cluster: Cluster) -> str:
        return f"{(Decimal(cluster.price_per_hour) * cluster.node_count).quantize(PRICE_PLACES):f}"

    @extend_schema_field(ClusterNodeSerializer(many=True))
    def get_nodes(self, cluster: Cluster) -> list[dict[str, Any]]:
        # The prefetched nodes (cluster_selectors.clusters_of) in rank order; a plain read otherwise.
        nodes = sorted(cluster.nodes.all(), key=lambda node: node.rank if node.rank is not None else -1)
        return list(ClusterNodeSerializer(nodes, many=True).data)


class ClusterCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(
        max_length=MAX_NAME,
        required=False,
        help_text=f"DNS-safe, at most {MAX_NAME} characters (nodes are named NAME-RANK); generated when "
        "omitted.",
    )
    instance_type = serializers.CharField(
        max_length=40, help_text="A whole-node type (whole_node in /api/v1/instance-types), e.g. gpu-h100x8."
    )
    region = serializers.CharField(max_length=40)
    image = serializers.CharField(
        max_length=255, help_text="A curated image slug, or a reference if allowed."
    )
    node_count = serializers.IntegerField(
        min_value=1,
        max_value=10_000,
        help_text="Whole nodes, 1 to the region's max_cluster_nodes (/api/v1/regions).",
    )
    placement = serializers.ChoiceField(
        choices=Placement.choices,
        required=False,
        default=Placement.BLOCK,
        help_text="block: every node in one topology block (default); any: anywhere in the region.",
    )
    on_node_failure = serializers.ChoiceField(
        choices=OnNodeFailure.choices,
        required=False,
        default=OnNodeFailure.REPLACE,
        help_text="What happens when a node is lost after the cluster ran: replace it in the same block "
        "(default), stop the cluster, or fail it.",
    )
    ssh_key_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, default=list, max_length=20
    )
    env = EnvField(required=False, default=dict, help_text="Set on every node.")
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
        max_value=TIMER_MAX,
        help_text="Seconds of running.",
    )
    max_runtime = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=60,
        max_value=TIMER_MAX,
        help_text="Seconds of running, in total.",
    )
    volumes = serializers.ListField(
        child=VolumeMountSerializer(),
        required=False,
        default=list,
        max_length=16,
        help_text="ReadWriteMany volumes of the tenant in the same region, mounted on every node, e.g. "
        '[{"volume_id": "...", "mount_path": "/shared"}].',
    )
    tags = TagsField(required=False, default=dict, help_text="Set on the cluster and on every node.")
    zone = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        help_text="One of the region's availability zones: the cluster is placed in a block of that zone "
        "(placement any: on that zone's nodes). Omitted: any zone (a block is always in one).",
    )


class ClusterUpdateSerializer(StrictInputSerializer):
    tags = TagChangesField(help_text="A merge patch: a string sets a key, null removes it; nodes follow.")


class ClusterEventSerializer(InstanceEventSerializer):
    """A node's event, with the node it happened to."""

    instance_id = serializers.UUIDField(read_only=True, help_text="The node's instance.")
    rank = serializers.IntegerField(read_only=True, help_text="The node's rank in the cluster.")

    class Meta(InstanceEventSerializer.Meta):
        fields = [*InstanceEventSerializer.Meta.fields, "instance_id", "rank"]
        read_only_fields = fields
