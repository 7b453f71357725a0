from rest_framework import serializers

from apps.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")
    token = serializers.UUIDField(source="actor_token_id", allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "token",
            "via",
            "action",
            "target_type",
            "target_id",
            "changes",
            "metadata",
            "ip",
            "request_id",
        ]
        read_only_fields = fields
