from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts import scopes
from apps.accounts.models import ApiToken, SshKey, User
from apps.core.serializers import StrictInputSerializer


class MembershipBriefSerializer(serializers.Serializer):
    tenant = serializers.CharField(source="tenant.slug")
    tenant_name = serializers.CharField(source="tenant.name")
    tenant_status = serializers.CharField(source="tenant.status")
    role = serializers.CharField()


class TokenBriefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    tenant = serializers.CharField(source="tenant.slug")
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)


class MeSerializer(serializers.ModelSerializer):
    email_verified = serializers.BooleanField(read_only=True)
    memberships = serializers.SerializerMethodField(
        help_text="Tenants you belong to (only the token's with a token)."
    )
    token = serializers.SerializerMethodField(help_text="The token this request used, if any.")

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "full_name",
            "email_verified",
            "is_staff",
            "date_joined",
            "memberships",
            "token",
        ]
        read_only_fields = fields

    @extend_schema_field(MembershipBriefSerializer(many=True))
    def get_memberships(self, user: User) -> list:
        return MembershipBriefSerializer(self.context["memberships"], many=True).data  # type: ignore[return-value]

    @extend_schema_field(TokenBriefSerializer(allow_null=True))
    def get_token(self, user: User) -> dict | None:
        token = self.context.get("token")
        return TokenBriefSerializer(token).data if token is not None else None


class ApiTokenSerializer(serializers.ModelSerializer):
    user = serializers.EmailField(source="user.email", read_only=True)
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "active",
            "parent",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "parent": {
                "help_text": "The API token this one was created with, if any; revoking that one revokes "
                "this one too."
            }
        }


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The secret. Shown only in this response; null when an Idempotency-Key replays it (secrets "
        "are never stored).",
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, min_length=1)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(scopes.ALL_SCOPES)),
        min_length=1,
        max_length=len(scopes.ALL_SCOPES),
        help_text="Write scopes imply their read scope; tenant:admin implies tenant:read.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class SshKeySerializer(serializers.ModelSerializer):
    private = serializers.SerializerMethodField(help_text="True when only its owner can use it.")
    created_by = serializers.EmailField(source="created_by.email", read_only=True)

    class Meta:
        model = SshKey
        fields = [
            "id",
            "name",
            "key_type",
            "bits",
            "fingerprint",
            "public_key",
            "private",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_private(self, key: SshKey) -> bool:
        return key.user_id is not None


class SshKeyCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, min_length=1)
    public_key = serializers.CharField(max_length=16384, help_text="One OpenSSH public key line.")
    private = serializers.BooleanField(default=False, help_text="Keep it to yourself instead of the tenant.")
