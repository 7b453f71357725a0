"""The tenant's audit log over the API: here, not in apps/audit, because it needs tenant access (audit sits
below accounts and tenants, since everything writes to it)."""

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.api.serializers import AuditEventSerializer
from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_events_of
from apps.core import filters
from apps.core.pagination import KeysetPagination
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(
        help_text="Exact action, e.g. member.change_role; a trailing * matches a prefix.",
        method="filter_action",
        max_length=64,
    )
    actor = django_filters.CharFilter(
        field_name="actor_label", lookup_expr="iexact", max_length=254, help_text="The actor's email address."
    )
    target_type = django_filters.CharFilter(max_length=64)
    target_id = django_filters.CharFilter(max_length=64)
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_action(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        if value.endswith("*"):
            return queryset.filter(action__startswith=value[:-1])
        return queryset.filter(action=value)


class AuditEventListView(TenantAPIView):
    permission_map = {"GET": Perm.AUDIT_READ}
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    ordering_fields = ["created_at"]
    pagination_class = KeysetPagination  # append-only, grows with the tenant's history

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return audit_events_of(tenant=self.tenant)

    @extend_schema(summary="List audit events", description="Newest first. Filter by action, actor and time.")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)
