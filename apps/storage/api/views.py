import django_filters
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.core import filters
from apps.core.errors import InvalidInput
from apps.core.idempotency import idempotent
from apps.core.pagination import KeysetPagination
from apps.storage import selectors, services
from apps.storage.api.serializers import VolumeCreateSerializer, VolumeSerializer, VolumeUpdateSerializer
from apps.storage.models import Volume, VolumeState
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm


class VolumeFilter(django_filters.FilterSet):
    state = django_filters.MultipleChoiceFilter(choices=VolumeState.choices)
    region = django_filters.CharFilter(field_name="region__slug", max_length=40)
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=63)
    include_deleted = filters.BooleanFilter(
        method="filter_deleted", help_text="Deleted volumes are hidden unless true."
    )

    class Meta:
        model = Volume
        fields: list[str] = []

    def filter_deleted(self, queryset: QuerySet[Volume], name: str, value: bool) -> QuerySet[Volume]:
        return queryset

    def filter_queryset(self, queryset: QuerySet[Volume]) -> QuerySet[Volume]:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_deleted") and not self.form.cleaned_data.get("state"):
            queryset = queryset.exclude(state=VolumeState.DELETED)
        return queryset


class VolumeListView(TenantAPIView):
    permission_map = {"GET": Perm.STORAGE_READ, "POST": Perm.STORAGE_WRITE}
    serializer_class = VolumeSerializer
    filterset_class = VolumeFilter
    ordering_fields = ["created_at", "name", "size_gib"]
    pagination_class = KeysetPagination

    def get_queryset(self) -> QuerySet[Volume]:
        return selectors.volumes_of(tenant=self.tenant)

    @extend_schema(summary="List volumes", description="Deleted volumes are hidden by default.")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(VolumeSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a volume",
        description="A PersistentVolumeClaim of the region's storage class in the tenant's namespace. "
        "Admitted against the tenant's volume quota (409 quota_exceeded). Honours Idempotency-Key.",
        request=VolumeCreateSerializer,
        responses={201: VolumeSerializer},
        examples=[
            OpenApiExample(
                "100 GiB",
                request_only=True,
                value={"name": "datasets", "region": "us-east-1", "size_gib": 100, "tags": {"team": "ml"}},
            )
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = VolumeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        volume = services.volume_create(
            actor=acting_user(request), tenant=self.tenant, **serializer.validated_data
        )
        return Response(VolumeSerializer(self.get_queryset().get(pk=volume.pk)).data, status=201)


class VolumeDetailView(TenantAPIView):
    permission_map = {"GET": Perm.STORAGE_READ, "PATCH": Perm.STORAGE_WRITE, "DELETE": Perm.STORAGE_WRITE}
    serializer_class = VolumeSerializer
    lookup_url_kwarg = "volume_id"

    def get_queryset(self) -> QuerySet[Volume]:
        return selectors.volumes_of(tenant=self.tenant)

    def render(self, volume: Volume, status: int = 200) -> Response:
        return Response(VolumeSerializer(self.get_queryset().get(pk=volume.pk)).data, status=status)

    @extend_schema(summary="Show a volume")
    def get(self, request: Request, tenant_slug: str, volume_id: str) -> Response:
        return Response(VolumeSerializer(self.get_object()).data)

    @extend_schema(
        summary="Rename, grow or retag a volume",
        description="size_gib only grows (400 naming size_gib otherwise) and is admitted against the quota. "
        "tags is a merge patch: a key with a string sets it, a key with null removes it, keys not named are "
        'kept (docs/billing.md "Tags"). All the changes are made, or none.',
        request=VolumeUpdateSerializer,
        responses=VolumeSerializer,
    )
    def patch(self, request: Request, tenant_slug: str, volume_id: str) -> Response:
        volume = self.get_object()  # another tenant's volume answers 404 whatever the body
        serializer = VolumeUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not data:
            raise InvalidInput(
                "Give name, size_gib or tags.", fields={"size_gib": ["Give name, size_gib or tags."]}
            )
        actor = acting_user(request)
        with transaction.atomic():  # every change or none
            if "tags" in data:
                volume = services.volume_tags_update(actor=actor, volume=volume, changes=data["tags"])
            if "size_gib" in data:
                volume = services.volume_resize(actor=actor, volume=volume, size_gib=data["size_gib"])
            if "name" in data:
                volume = services.volume_rename(actor=actor, volume=volume, name=data["name"])
        return self.render(volume)

    @extend_schema(
        summary="Delete a volume",
        description="Only when no instance that is not terminated mounts it (409 volume_attached). Billing "
        "stops now; the claim and its data are removed.",
        responses={202: VolumeSerializer},
    )
    def delete(self, request: Request, tenant_slug: str, volume_id: str) -> Response:
        volume = services.volume_delete(actor=acting_user(request), volume=self.get_object())
        return self.render(volume, status=202)
