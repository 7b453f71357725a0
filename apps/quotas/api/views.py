from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.core.idempotency import idempotent
from apps.quotas import selectors, services
from apps.quotas.api.serializers import (
    QuotaOverviewSerializer,
    QuotaRequestCreateSerializer,
    QuotaRequestSerializer,
)
from apps.quotas.models import QuotaRequest
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm


class QuotaView(TenantAPIView):
    permission_map = {"GET": Perm.TENANT_READ}
    serializer_class = QuotaOverviewSerializer
    pagination_class = None

    @extend_schema(summary="Show quotas and current usage")
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response(QuotaOverviewSerializer(selectors.quota_overview(tenant=self.tenant)).data)


class QuotaRequestListView(TenantAPIView):
    permission_map = {"GET": Perm.TENANT_READ, "POST": Perm.QUOTA_MANAGE}
    serializer_class = QuotaRequestSerializer
    filterset_fields = ["status", "resource"]
    ordering_fields = ["created_at"]

    def get_queryset(self) -> QuerySet[QuotaRequest]:
        return selectors.quota_requests_of(tenant=self.tenant)

    @extend_schema(summary="List quota increase requests")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(QuotaRequestSerializer(page, many=True).data)

    @extend_schema(
        summary="Ask for a quota increase",
        description="Staff approve or deny it in the admin; you get an email either way.",
        request=QuotaRequestCreateSerializer,
        responses={201: QuotaRequestSerializer},
        examples=[
            OpenApiExample(
                "More H100s",
                request_only=True,
                value={
                    "resource": "gpu_type",
                    "gpu_type": "h100-80gb",
                    "amount": 16,
                    "reason": "Training a 70B model",
                },
            )
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = QuotaRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        quota_request = services.quota_request_create(
            actor=acting_user(request), tenant=self.tenant, **serializer.validated_data
        )
        return Response(QuotaRequestSerializer(quota_request).data, status=201)


class QuotaRequestDetailView(TenantAPIView):
    permission_map = {"GET": Perm.TENANT_READ}
    serializer_class = QuotaRequestSerializer
    lookup_url_kwarg = "quota_request_id"

    def get_queryset(self) -> QuerySet[QuotaRequest]:
        return selectors.quota_requests_of(tenant=self.tenant)

    @extend_schema(summary="Show a quota request")
    def get(self, request: Request, tenant_slug: str, quota_request_id: str) -> Response:
        return Response(QuotaRequestSerializer(self.get_object()).data)
