from rest_framework import serializers

from apps.core.serializers import StrictInputSerializer
from apps.tenants.models import Invitation, Membership, Tenant
from apps.tenants.roles import Role

ROLE_CHOICES = [r.value for r in Role]


class TenantSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="The caller's role in this tenant.")

    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "status", "status_reason", "created_at", "role"]
        read_only_fields = fields

    def get_role(self, tenant: Tenant) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(tenant.pk)


class TenantCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, min_length=1)
    slug = serializers.SlugField(
        max_length=40,
        min_length=3,
        required=False,
        help_text="Lowercase letters, digits and hyphens; derived from the name when omitted. Immutable.",
    )

    def validate_slug(self, value: str) -> str:
        if value != value.lower():
            raise serializers.ValidationError("Use lowercase letters, digits and hyphens only.")
        return value


class TenantUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, min_length=1)


class UserSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    full_name = serializers.CharField()


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at"]
        read_only_fields = fields


class MembershipUpdateSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class InvitationSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True)
    invited_by = serializers.EmailField(source="invited_by.email", read_only=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "state",
            "invited_by",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = fields


class InvitationCreateSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=ROLE_CHOICES)


class InvitationAcceptSerializer(StrictInputSerializer):
    token = serializers.CharField(max_length=200, help_text="The secret from the invitation link.")
