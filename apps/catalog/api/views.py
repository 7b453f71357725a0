"""The catalog: readable by every signed-in user and every API token, whatever its scopes."""

from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response

from apps.catalog import selectors
from apps.catalog.api.serializers import (
    GpuTypeSerializer,
    ImageSerializer,
    InstanceTypeSerializer,
    RegionSerializer,
)
from apps.catalog.models import GpuType, Image, InstanceType, Region
from apps.core import filters
from apps.core.errors import InvalidInput


class RegionListView(generics.ListAPIView):
    serializer_class = RegionSerializer
    filterset_fields = ["status"]
    ordering_fields = ["slug", "name"]

    def get_queryset(self) -> QuerySet[Region]:
        return selectors.regions()

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "zones": selectors.region_zones()}

    @extend_schema(summary="List regions")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class GpuTypeListView(generics.ListAPIView):
    serializer_class = GpuTypeSerializer
    filterset_fields = ["vendor"]
    ordering_fields = ["slug", "memory_gib"]

    def get_queryset(self) -> QuerySet[GpuType]:
        return selectors.gpu_types()

    @extend_schema(summary="List GPU types")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class InstanceTypeFilter(django_filters.FilterSet):
    region = django_filters.CharFilter(method="filter_noop", max_length=40, help_text="Region slug.")
    gpu_type = django_filters.CharFilter(
        field_name="gpu_type__slug", max_length=40, help_text="GPU type slug."
    )
    available = filters.BooleanFilter(method="filter_noop", help_text="Only types launchable now.")
    min_gpus = filters.IntegerFilter(field_name="gpu_count", lookup_expr="gte")

    class Meta:
        model = InstanceType
        fields: list[str] = []

    def filter_noop(self, queryset: QuerySet[InstanceType], name: str, value: Any) -> QuerySet[InstanceType]:
        return queryset  # applied after availability is known, in the view


class InstanceTypeListView(generics.ListAPIView):
    serializer_class = InstanceTypeSerializer
    filterset_class = InstanceTypeFilter
    ordering_fields = ["slug", "price_per_hour", "gpu_count"]

    def get_queryset(self) -> QuerySet[InstanceType]:
        return selectors.active_instance_types()

    def _only_available(self) -> bool:
        value = self.request.query_params.get("available")
        if value is None or value.lower() in ("false", "0"):
            return False
        if value.lower() in ("true", "1"):
            return True
        raise InvalidInput(
            "available must be true or false.", fields={"available": ["Must be true or false."]}
        )

    @cached_property
    def _offer(self) -> tuple[list[Region], dict[tuple[Any, Any], int]]:
        """The regions asked about and the availability in them, computed once per request."""
        regions = list(selectors.regions())
        region_slug = self.request.query_params.get("region")
        if region_slug:
            regions = [r for r in regions if r.slug == region_slug]
        region_ids = {r.pk for r in regions}
        availability = {
            key: n
            for key, n in selectors.availability().items()
            if key[0] in region_ids and (n > 0 or not self._only_available())
        }
        return regions, availability

    def get_serializer_context(self) -> dict[str, Any]:
        regions, availability = self._offer
        return {
            **super().get_serializer_context(),
            "regions": regions,
            "availability": availability,
            "whole_nodes_free": selectors.whole_nodes_free_by_type(),
            "availability_by_zone": selectors.availability_by_zone(availability),
        }

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().filter_queryset(queryset)
        if not self.request.query_params.get("region") and not self._only_available():
            return queryset
        _regions, availability = self._offer
        return queryset.filter(pk__in={type_id for (_region_id, type_id) in availability})

    @extend_schema(
        summary="List instance types with prices and live availability",
        description="`region` limits availability to one region; `available=true` keeps only types with "
        "capacity now. Prices are per hour; billing is per second.",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ImageListView(generics.ListAPIView):
    serializer_class = ImageSerializer
    ordering_fields = ["slug", "name"]

    def get_queryset(self) -> QuerySet[Image]:
        images = Image.objects.filter(active=True).prefetch_related("regions")
        region = self.request.query_params.get("region")
        return images.filter(regions__slug=region) if region else images

    @extend_schema(summary="List curated images", description="Filter with `region=`.")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
