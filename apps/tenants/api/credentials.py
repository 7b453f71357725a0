from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import services
from apps.accounts.acting import acting_user
from apps.accounts.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    MeSerializer,
    SshKeyCreateSerializer,
    SshKeySerializer,
)
from apps.accounts.models import ApiToken, SshKey
from apps.core.idempotency import idempotent
from apps.tenants import selectors, tokens
from apps.tenants.access import check_permission
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm
from apps.tenants.selectors import memberships_for_user


class MeView(generics.GenericAPIView):
    serializer_class = MeSerializer
    pagination_class = None

    @extend_schema(summary="Who am I", description="The caller, their tenants and roles, and the token used.")
    def get(self, request: Request) -> Response:
        user = acting_user(request)
        token = request.auth if isinstance(request.auth, ApiToken) else None
        memberships = memberships_for_user(user=user)
        if token is not None:
            memberships = memberships.filter(tenant_id=token.tenant_id)
        return Response(MeSerializer(user, context={"token": token, "memberships": memberships}).data)


class TokenListView(TenantAPIView):
    """API tokens of the tenant: your own, or everyone's for admins and owners."""

    permission_map = {"GET": Perm.TOKENS_OWN, "POST": Perm.TOKENS_OWN}
    serializer_class = ApiTokenSerializer
    ordering_fields = ["created_at", "name", "last_used_at"]

    def get_queryset(self) -> QuerySet[ApiToken]:
        return selectors.tokens_visible_to(membership=self.membership)

    @extend_schema(summary="List API tokens")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ApiTokenSerializer(page, many=True).data)

    @extend_schema(
        summary="Create an API token",
        description="The secret is in the `token` field of this response and is never shown again; a replay "
        "with the same Idempotency-Key returns the token with `token: null` (revoke it and create another if "
        "the first response was lost). "
        "Scopes cannot exceed what your role allows. A request made with an API token can only create "
        "tokens with scopes that token holds and an expiry no later than its own (its expiry when none is "
        "given); the new token is revoked with it.",
        request=ApiTokenCreateSerializer,
        responses={201: ApiTokenCreatedSerializer},
        examples=[
            OpenApiExample(
                "CI token",
                request_only=True,
                value={"name": "ci", "scopes": ["instances:write"], "expires_at": "2027-01-01T00:00:00Z"},
            )
        ],
    )
    @idempotent(secret_fields=("token",))
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = ApiTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, plaintext = tokens.token_create(
            user=acting_user(request),
            membership=self.membership,
            parent=self.token,  # made with a token: bounded by it, and revoked with it
            **serializer.validated_data,
        )
        token.token = plaintext  # type: ignore[attr-defined]
        return Response(ApiTokenCreatedSerializer(token).data, status=201)


class TokenDetailView(TenantAPIView):
    permission_map = {"GET": Perm.TOKENS_OWN, "DELETE": Perm.TOKENS_OWN}
    serializer_class = ApiTokenSerializer
    lookup_url_kwarg = "token_id"

    def get_queryset(self) -> QuerySet[ApiToken]:
        return selectors.tokens_visible_to(membership=self.membership)

    @extend_schema(summary="Show an API token")
    def get(self, request: Request, tenant_slug: str, token_id: str) -> Response:
        return Response(ApiTokenSerializer(self.get_object()).data)

    @extend_schema(
        summary="Revoke an API token",
        description="Tokens created with this token (and those created with them) are revoked with it.",
        responses={200: ApiTokenSerializer},
    )
    def delete(self, request: Request, tenant_slug: str, token_id: str) -> Response:
        token = self.get_object()
        if token.user_id != acting_user(request).pk:
            check_permission(membership=self.membership, perm=Perm.TOKENS_MANAGE, token=self.token)
        token = services.token_revoke(actor=acting_user(request), token=token)
        return Response(ApiTokenSerializer(token).data)


class SshKeyListView(TenantAPIView):
    permission_map = {"GET": Perm.INSTANCES_READ, "POST": Perm.INSTANCES_WRITE}
    serializer_class = SshKeySerializer
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> QuerySet[SshKey]:
        return selectors.ssh_keys_visible_to(membership=self.membership).select_related("created_by")

    @extend_schema(summary="List SSH keys")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(SshKeySerializer(page, many=True).data)

    @extend_schema(
        summary="Add an SSH public key",
        description="ed25519, ECDSA or RSA (2048 bits or more). Parsed and fingerprinted on upload.",
        request=SshKeyCreateSerializer,
        responses={201: SshKeySerializer},
        examples=[
            OpenApiExample(
                "Laptop",
                request_only=True,
                value={
                    "name": "laptop",
                    "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE... ada@laptop",
                },
            )
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = SshKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = services.ssh_key_create(
            actor=acting_user(request), tenant=self.tenant, **serializer.validated_data
        )
        return Response(SshKeySerializer(key).data, status=201)


class SshKeyDetailView(TenantAPIView):
    permission_map = {"GET": Perm.INSTANCES_READ, "DELETE": Perm.INSTANCES_WRITE}
    serializer_class = SshKeySerializer
    lookup_url_kwarg = "ssh_key_id"

    def get_queryset(self) -> QuerySet[SshKey]:
        return selectors.ssh_keys_visible_to(membership=self.membership).select_related("created_by")

    @extend_schema(summary="Show an SSH key")
    def get(self, request: Request, tenant_slug: str, ssh_key_id: str) -> Response:
        return Response(SshKeySerializer(self.get_object()).data)

    @extend_schema(
        summary="Delete an SSH key",
        description="Running instances keep the key they started with.",
        responses={204: None},
    )
    def delete(self, request: Request, tenant_slug: str, ssh_key_id: str) -> Response:
        services.ssh_key_delete(actor=acting_user(request), key=self.get_object())
        return Response(status=204)
