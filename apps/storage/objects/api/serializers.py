from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.core.serializers import StrictInputSerializer
from apps.core.tags import TagChangesField, TagsField
from apps.storage.objects import names
from apps.storage.objects.models import AccessKey, Bucket


class BucketSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    size_bytes = serializers.IntegerField(read_only=True, help_text="Bytes stored at the last usage sample.")
    object_count = serializers.IntegerField(read_only=True, help_text="Objects at the last usage sample.")
    usage_sampled_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When size_bytes and object_count were measured."
    )
    physical_name = serializers.CharField(
        read_only=True, help_text="The bucket's name on the S3 service: use it with S3 clients."
    )
    tags = TagsField(read_only=True, help_text="Key/value labels.")

    class Meta:
        model = Bucket
        fields = [
            "id",
            "name",
            "tags",
            "physical_name",
            "size_bytes",
            "object_count",
            "usage_sampled_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class BucketCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(
        max_length=200,
        help_text=f"{names.NAME_MIN}-{names.NAME_MAX} lowercase letters, digits and hyphens; unique in the "
        "tenant.",
    )
    tags = TagsField(required=False, default=dict)

    def validate_name(self, value: str) -> str:
        errors = names.name_errors(value)
        if errors:
            raise serializers.ValidationError(errors)
        return value


class BucketUpdateSerializer(StrictInputSerializer):
    tags = TagChangesField(help_text="A merge patch: a string sets a key, null removes it, others are kept.")


class PresignSerializer(StrictInputSerializer):
    method = serializers.ChoiceField(choices=["get", "put"])
    key = serializers.CharField(max_length=1024, min_length=1, trim_whitespace=False, help_text="Object key.")
    expires_in = serializers.IntegerField(
        min_value=1,
        max_value=settings.OBJECT_STORAGE_PRESIGN_MAX_SECONDS,
        default=3600,
        help_text="Seconds the URL stays valid (at most 7 days).",
    )
    content_length = serializers.IntegerField(
        min_value=0,
        max_value=settings.OBJECT_STORAGE_PRESIGN_MAX_BYTES,
        required=False,
        help_text="For put (required): the size in bytes of the upload. The URL accepts exactly this many "
        "bytes (a signed Content-Length), at most 5 GiB and what is left of the tenant's byte quota.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["method"] == "put" and "content_length" not in attrs:
            raise serializers.ValidationError({"content_length": ["Required for method put."]})
        if attrs["method"] == "get" and "content_length" in attrs:
            raise serializers.ValidationError({"content_length": ["Only for method put."]})
        return attrs

    def validate_key(self, value: str) -> str:
        if len(value.encode()) > 1024:
            raise serializers.ValidationError("At most 1024 bytes in UTF-8.")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise serializers.ValidationError("Must not contain control characters.")
        return value


class PresignedUrlSerializer(serializers.Serializer):
    method = serializers.CharField()
    url = serializers.URLField()
    expires_at = serializers.DateTimeField()
    content_length = serializers.IntegerField(
        allow_null=True, help_text="put: the exact size in bytes the upload must have; null for get."
    )


class AccessKeySerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)
    active = serializers.BooleanField(source="is_active", read_only=True)
    suspended = serializers.BooleanField(
        source="is_suspended",
        read_only=True,
        help_text="True while the tenant's keys are suspended (it is suspended or out of funds): the key "
        "is refused until then, and works again, with the same secret, afterwards.",
    )

    class Meta:
        model = AccessKey
        fields = [
            "id",
            "name",
            "access_key_id",
            "active",
            "suspended",
            "created_by",
            "created_at",
            "revoked_at",
        ]
        read_only_fields = fields


class AccessKeyCreatedSerializer(AccessKeySerializer):
    secret_access_key = serializers.CharField(
        allow_null=True, read_only=True, help_text="Shown once; null in a replay of the same Idempotency-Key."
    )
    endpoint_url = serializers.CharField(read_only=True, help_text="The S3 endpoint to use the key with.")
    region = serializers.CharField(read_only=True)

    class Meta(AccessKeySerializer.Meta):
        fields = [*AccessKeySerializer.Meta.fields, "secret_access_key", "endpoint_url", "region"]
        read_only_fields = fields


class AccessKeyCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, min_length=1)
