from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.catalog.models import GpuType, Image, InstanceType, Region


class RegionSerializer(serializers.ModelSerializer):
    zones = serializers.SerializerMethodField(
        help_text="The region's availability zones (its nodes' topology.kubernetes.io/zone), sorted; "
        "empty for a region without zones (docs/networking.md)."
    )

    class Meta:
        model = Region
        fields = [
            "slug",
            "name",
            "status",
            "zones",
            "storage_class",
            "access_service_type",
            "max_cluster_nodes",
        ]
        read_only_fields = fields

    def get_zones(self, region: Region) -> list[str]:
        zones: dict[Any, list[str]] = self.context["zones"]
        return zones.get(region.pk, [])


class GpuTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = GpuType
        fields = ["slug", "vendor", "model", "memory_gib", "product_label", "resource_name", "is_fractional"]
        read_only_fields = fields


class RegionAvailabilitySerializer(serializers.Serializer):
    region = serializers.CharField()
    available = serializers.IntegerField(help_text="How many more could launch there now.")
    whole_nodes_free = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Nodes of this type's GPU that are wholly free now, by topology block (docs/catalog.md "
        '"Topology"): how many nodes a multi-node cluster could get in one block. Empty for CPU types.',
    )
    zones = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="How many more could launch in each availability zone now (a launch naming that zone); "
        "empty where the region has no zones.",
    )


class InstanceTypeSerializer(serializers.ModelSerializer):
    gpu_type = serializers.CharField(source="gpu_type.slug", read_only=True, allow_null=True, default=None)
    price_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4, coerce_to_string=True)
    regions = serializers.SerializerMethodField(
        help_text="Regions offering this type with their live availability (like regions_with_capacity)."
    )

    class Meta:
        model = InstanceType
        fields = [
            "slug",
            "name",
            "gpu_type",
            "gpu_count",
            "vcpu",
            "memory_gib",
            "ephemeral_disk_gib",
            "price_per_hour",
            "whole_node",
            "regions",
        ]
        read_only_fields = fields

    @extend_schema_field(RegionAvailabilitySerializer(many=True))
    def get_regions(self, instance_type: InstanceType) -> list[dict[str, Any]]:
        availability: dict[tuple[Any, Any], int] = self.context["availability"]
        whole: dict[tuple[Any, Any], dict[str, int]] = self.context["whole_nodes_free"]
        by_zone: dict[tuple[Any, Any], dict[str, int]] = self.context["availability_by_zone"]
        regions: list[Region] = self.context["regions"]
        return [
            {
                "region": region.slug,
                "available": availability[(region.pk, instance_type.pk)],
                "whole_nodes_free": whole.get((region.pk, instance_type.pk), {}),
                "zones": by_zone.get((region.pk, instance_type.pk), {}),
            }
            for region in regions
            if (region.pk, instance_type.pk) in availability
        ]


class ImageSerializer(serializers.ModelSerializer):
    regions = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["slug", "name", "reference", "description", "command", "regions"]
        read_only_fields = fields

    def get_regions(self, image: Image) -> list[str]:
        return [region.slug for region in image.regions.all()]
