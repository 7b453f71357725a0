from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.accounts.models import ApiToken
from apps.core.errors import Forbidden
from apps.core.idempotency import idempotent
from apps.tenants import selectors, services
from apps.tenants.api.base import TenantAPIView
from apps.tenants.api.serializers import (
    InvitationAcceptSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    TenantCreateSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
)
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Perm


class TenantListView(generics.GenericAPIView):
    """Tenants the caller belongs to; an API token sees only its own tenant."""

    serializer_class = TenantSerializer
    ordering_fields = ["slug", "name", "created_at"]
    filterset_fields = ["status"]

    def get_queryset(self) -> QuerySet[Tenant]:
        tenants = selectors.tenants_for_user(user=acting_user(self.request))
        if isinstance(self.request.auth, ApiToken):
            tenants = tenants.filter(pk=self.request.auth.tenant_id)
        return tenants

    def _roles(self) -> dict[Any, str]:
        return {m.tenant_id: m.role for m in Membership.objects.filter(user=acting_user(self.request))}

    @extend_schema(summary="List your tenants", responses=TenantSerializer(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        data = TenantSerializer(page, many=True, context={"roles": self._roles()}).data
        return self.get_paginated_response(data)

    @extend_schema(
        summary="Create a tenant",
        description="You become its owner. Needs a verified email; API tokens cannot create tenants.",
        request=TenantCreateSerializer,
        responses={201: TenantSerializer},
        examples=[
            OpenApiExample("New tenant", value={"name": "Acme Research", "slug": "acme"}, request_only=True)
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            raise Forbidden(
                "API tokens are bound to one tenant and cannot create tenants.", code="token_forbidden"
            )
        serializer = TenantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tenant = services.tenant_create(user=acting_user(request), **serializer.validated_data)
        return Response(TenantSerializer(tenant, context={"roles": {tenant.pk: "owner"}}).data, status=201)


class TenantDetailView(TenantAPIView):
    permission_map = {"GET": Perm.TENANT_READ, "PATCH": Perm.TENANT_UPDATE}
    serializer_class = TenantSerializer

    def _render(self) -> Response:
        return Response(
            TenantSerializer(self.tenant, context={"roles": {self.tenant.pk: self.membership.role}}).data
        )

    @extend_schema(summary="Show a tenant")
    def get(self, request: Request, tenant_slug: str) -> Response:
        return self._render()

    @extend_schema(summary="Rename a tenant", request=TenantUpdateSerializer, responses=TenantSerializer)
    def patch(self, request: Request, tenant_slug: str) -> Response:
        serializer = TenantUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.tenant_update(actor=acting_user(request), tenant=self.tenant, **serializer.validated_data)
        return self._render()


class MemberListView(TenantAPIView):
    permission_map = {"GET": Perm.MEMBERS_READ}
    serializer_class = MembershipSerializer
    filterset_fields = ["role"]
    ordering_fields = ["created_at", "role", "user__email"]

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.members_of(tenant=self.tenant)

    @extend_schema(summary="List members")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(MembershipSerializer(page, many=True).data)


class MemberDetailView(TenantAPIView):
    permission_map = {"GET": Perm.MEMBERS_READ, "PATCH": Perm.MEMBERS_MANAGE, "DELETE": Perm.MEMBERS_LEAVE}
    serializer_class = MembershipSerializer
    lookup_url_kwarg = "member_id"

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.members_of(tenant=self.tenant)

    @extend_schema(summary="Show a member")
    def get(self, request: Request, tenant_slug: str, member_id: str) -> Response:
        return Response(MembershipSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a member's role", request=MembershipUpdateSerializer, responses=MembershipSerializer
    )
    def patch(self, request: Request, tenant_slug: str, member_id: str) -> Response:
        membership = self.get_object()
        serializer = MembershipUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            actor=acting_user(request),
            actor_role=self.membership.role,
            membership=membership,
            role=serializer.validated_data["role"],
        )
        return Response(MembershipSerializer(membership).data)

    @extend_schema(
        summary="Remove a member, or leave",
        description="Anyone may remove themselves (leave, members.leave); removing others needs "
        "members.manage. Both need the tenant:admin scope with an API token. The last owner can neither "
        "leave nor be removed.",
        responses={204: None},
    )
    def delete(self, request: Request, tenant_slug: str, member_id: str) -> Response:
        membership = self.get_object()
        if membership.user_id != acting_user(request).pk:
            from apps.tenants.access import check_permission

            check_permission(membership=self.membership, perm=Perm.MEMBERS_MANAGE, token=self.token)
        services.membership_remove(
            actor=acting_user(request), actor_role=self.membership.role, membership=membership
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(TenantAPIView):
    permission_map = {"GET": Perm.INVITATIONS_MANAGE, "POST": Perm.INVITATIONS_MANAGE}
    serializer_class = InvitationSerializer
    ordering_fields = ["created_at", "email"]
    filterset_fields = ["role", "email"]

    def get_queryset(self) -> QuerySet[Any]:
        return selectors.invitations_of(tenant=self.tenant)

    @extend_schema(summary="List invitations")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(InvitationSerializer(page, many=True).data)

    @extend_schema(
        summary="Invite someone by email",
        description="Emails a single-use link that expires. "
        "Re-inviting the same address revokes the previous link.",
        request=InvitationCreateSerializer,
        responses={201: InvitationSerializer},
        examples=[
            OpenApiExample("Invite", value={"email": "ada@example.com", "role": "member"}, request_only=True)
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = InvitationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, _secret = services.invitation_create(
            actor=acting_user(request),
            actor_role=self.membership.role,
            tenant=self.tenant,
            **serializer.validated_data,
        )
        return Response(InvitationSerializer(invitation).data, status=201)


class InvitationDetailView(TenantAPIView):
    permission_map = {"GET": Perm.INVITATIONS_MANAGE, "DELETE": Perm.INVITATIONS_MANAGE}
    serializer_class = InvitationSerializer
    lookup_url_kwarg = "invitation_id"

    def get_queryset(self) -> QuerySet[Any]:
        return selectors.invitations_of(tenant=self.tenant)

    @extend_schema(summary="Show an invitation")
    def get(self, request: Request, tenant_slug: str, invitation_id: str) -> Response:
        return Response(InvitationSerializer(self.get_object()).data)

    @extend_schema(summary="Revoke an invitation", responses={200: InvitationSerializer})
    def delete(self, request: Request, tenant_slug: str, invitation_id: str) -> Response:
        invitation = services.invitation_revoke(actor=acting_user(request), invitation=self.get_object())
        return Response(InvitationSerializer(invitation).data)


class InvitationAcceptView(generics.GenericAPIView):
    serializer_class = InvitationAcceptSerializer

    @extend_schema(
        summary="Accept an invitation",
        description="The signed-in user's verified email must be the invited address. Console sessions only "
        "in practice: API tokens belong to a tenant already, but a token's user may accept too.",
        request=InvitationAcceptSerializer,
        responses={201: MembershipSerializer},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = InvitationAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.invitation_accept(
            user=acting_user(request), secret=serializer.validated_data["token"]
        )
        body = MembershipSerializer(membership).data
        body["tenant"] = membership.tenant.slug
        return Response(body, status=201)
