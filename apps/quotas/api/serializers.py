from rest_framework import serializers

from apps.catalog.models import GpuType, Region
from apps.core.serializers import StrictInputSerializer
from apps.quotas.models import QuotaRequest, QuotaResource


class LimitSerializer(serializers.Serializer):
    resource = serializers.CharField()
    limit = serializers.IntegerField()
    used = serializers.IntegerField()


class GpuLimitSerializer(serializers.Serializer):
    gpu_type = serializers.CharField()
    region = serializers.CharField(allow_null=True, help_text="Null: across all regions.")
    limit = serializers.IntegerField()
    used = serializers.IntegerField()


class QuotaOverviewSerializer(serializers.Serializer):
    limits = LimitSerializer(many=True)
    gpu_types = GpuLimitSerializer(many=True)


class QuotaRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.EmailField(source="requested_by.email", read_only=True)
    gpu_type = serializers.CharField(source="gpu_type.slug", read_only=True, allow_null=True, default=None)
    region = serializers.CharField(source="region.slug", read_only=True, allow_null=True, default=None)

    class Meta:
        model = QuotaRequest
        fields = [
            "id",
            "resource",
            "gpu_type",
            "region",
            "amount",
            "reason",
            "status",
            "requested_by",
            "created_at",
            "decided_at",
            "decision_note",
        ]
        read_only_fields = fields


class QuotaRequestCreateSerializer(StrictInputSerializer):
    resource = serializers.ChoiceField(choices=QuotaResource.choices)
    gpu_type = serializers.SlugRelatedField(slug_field="slug", queryset=GpuType.objects.all(), required=False)
    region = serializers.SlugRelatedField(slug_field="slug", queryset=Region.objects.all(), required=False)
    amount = serializers.IntegerField(min_value=1, max_value=100_000, help_text="The new limit you ask for.")
    reason = serializers.CharField(max_length=2000, min_length=10)
