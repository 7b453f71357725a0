"""The cluster endpoints under /api/v1/tenants/{tenant_slug}/clusters (docs/clusters.md): built like the
instance endpoints (views.py), with the same permissions, Idempotency-Key, keyset pagination and errors.
Writes go through apps.instances.cluster_services; reads through apps.instances.cluster_selectors."""

from __future__ import annotations

from typing import ClassVar

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.core.errors import InvalidInput
from apps.core.idempotency import idempotent
from apps.core.pagination import KeysetPagination
from apps.instances import cluster_selectors, cluster_services
from apps.instances.api.cluster_serializers import (
    ClusterCreateSerializer,
    ClusterEventSerializer,
    ClusterSerializer,
    ClusterUpdateSerializer,
)
from apps.instances.api.filtering import LiveFilterSet
from apps.instances.cluster_states import ClusterState
from apps.instances.models import Cluster, InstanceEvent
from apps.instances.states import Action
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm


class ClusterFilter(LiveFilterSet):
    state = django_filters.MultipleChoiceFilter(choices=[(s.value, s.value) for s in ClusterState])
    region = django_filters.CharFilter(field_name="region__slug", max_length=40)
    instance_type = django_filters.CharFilter(field_name="instance_type__slug", max_length=40)
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=40)

    class Meta:
        model = Cluster
        fields: list[str] = []


class ClusterListView(TenantAPIView):
    permission_map = {"GET": Perm.INSTANCES_READ, "POST": Perm.INSTANCES_WRITE}
    serializer_class = ClusterSerializer
    filterset_class = ClusterFilter
    ordering_fields = ["created_at", "name", "state"]
    pagination_class = KeysetPagination

    def get_queryset(self) -> QuerySet[Cluster]:
        return cluster_selectors.clusters_of(tenant=self.tenant)

    @extend_schema(
        summary="List clusters",
        description="Newest first, each with its nodes. Terminated clusters are hidden by default.",
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ClusterSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a cluster",
        description="N whole nodes of one whole-node instance type, admitted all at once or not at all: "
        "quota for every node (409 quota_exceeded), funds for the whole cluster's price (402), and a "
        "topology block with N wholly free nodes (409 no_capacity with the largest block's and the "
        "region's free nodes). Its nodes are instances named NAME-RANK. Honours Idempotency-Key.",
        request=ClusterCreateSerializer,
        responses={201: ClusterSerializer},
        examples=[
            OpenApiExample(
                "Four 8xH100 nodes in one block",
                request_only=True,
                value={
                    "name": "llm",
                    "instance_type": "gpu-h100x8",
                    "region": "us-east-1",
                    "image": "pytorch",
                    "node_count": 4,
                    "placement": "block",
                    "on_node_failure": "replace",
                    "ssh_key_ids": ["4f1c1d2e-0000-4000-8000-000000000000"],
                    "command": ["torchrun", "--nnodes=4", "train.py"],
                    "tags": {"team": "ml", "project": "llm"},
                },
            )
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = ClusterCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cluster = cluster_services.cluster_create(
            actor=acting_user(request),
            tenant=self.tenant,
            req=cluster_services.ClusterRequest(**serializer.validated_data),
        )
        return Response(ClusterSerializer(self.get_queryset().get(pk=cluster.pk)).data, status=201)


class ClusterObjectMixin(TenantAPIView):
    lookup_url_kwarg = "cluster_id"
    serializer_class = ClusterSerializer

    def get_queryset(self) -> QuerySet[Cluster]:
        return cluster_selectors.clusters_of(tenant=self.tenant)

    def render(self, cluster: Cluster, status: int = 200) -> Response:
        return Response(ClusterSerializer(self.get_queryset().get(pk=cluster.pk)).data, status=status)


class ClusterDetailView(ClusterObjectMixin):
    permission_map = {"GET": Perm.INSTANCES_READ, "PATCH": Perm.INSTANCES_WRITE}
    allowed_when_suspended = frozenset({"PATCH"})  # labels cost nothing, as for an instance's PATCH

    @extend_schema(summary="Show a cluster", responses={200: ClusterSerializer})
    def get(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        return Response(ClusterSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a cluster's tags",
        description="`tags` is a merge patch: a key with a string sets it, a key with null removes it, keys "
        "not named are kept. Every node takes the cluster's new tags in the same transaction "
        '(docs/billing.md "Tags").',
        request=ClusterUpdateSerializer,
        responses={200: ClusterSerializer},
        examples=[OpenApiExample("Retag", request_only=True, value={"tags": {"team": "research"}})],
    )
    def patch(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        cluster = self.get_object()  # another tenant's cluster answers 404 whatever the body
        serializer = ClusterUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cluster = cluster_services.cluster_tags_update(
            actor=acting_user(request), cluster=cluster, changes=serializer.validated_data["tags"]
        )
        return self.render(cluster)


class ClusterActionView(ClusterObjectMixin):
    cluster_action: ClassVar[Action]
    permission_map = {"POST": Perm.INSTANCES_WRITE}

    def post(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        cluster = self.get_object()  # another tenant's cluster answers 404 whatever the body
        if request.data:
            raise InvalidInput(
                "This action takes no body.", fields={name: ["Unknown field."] for name in request.data}
            )
        cluster = cluster_services.cluster_act(
            actor=acting_user(request), cluster=cluster, action=self.cluster_action
        )
        return self.render(cluster, status=202)


class ClusterStopView(ClusterActionView):
    cluster_action = Action.STOP
    allowed_when_suspended = frozenset({"POST"})  # stopping costs nothing; a suspended tenant may stop

    @extend_schema(
        summary="Stop a cluster",
        description="Every node's pod is deleted; billing stops once the nodes have stopped. 409 "
        "invalid_state (with allowed_actions) when the cluster cannot stop.",
        request=None,
        responses={202: ClusterSerializer},
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        return super().post(request, tenant_slug, cluster_id)


class ClusterStartView(ClusterActionView):
    cluster_action = Action.START

    @extend_schema(
        summary="Start a stopped or failed cluster",
        description="Admitted whole like a creation: quota and funds for every node and a block with room "
        "for all of them (the nodes may land on other machines than before).",
        request=None,
        responses={202: ClusterSerializer},
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        return super().post(request, tenant_slug, cluster_id)


class ClusterTerminateView(ClusterActionView):
    cluster_action = Action.TERMINATE
    allowed_when_suspended = frozenset({"POST"})  # cleaning up, like DELETE of an instance

    @extend_schema(
        summary="Terminate a cluster",
        description="Every node is terminated for good; the cluster's name is free again once it is.",
        request=None,
        responses={202: ClusterSerializer},
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        return super().post(request, tenant_slug, cluster_id)


class ClusterEventListView(ClusterObjectMixin):
    permission_map = {"GET": Perm.INSTANCES_READ}
    serializer_class = ClusterEventSerializer  # type: ignore[assignment]
    ordering_fields = ["created_at"]
    pagination_class = KeysetPagination

    def get_events(self) -> QuerySet[InstanceEvent]:
        return cluster_selectors.cluster_events(self.get_object())

    @extend_schema(
        summary="List a cluster's events",
        description="Every node's events merged, oldest first like an instance's timeline "
        "(`ordering=-created_at` for newest first); each names its node (rank and instance_id).",
    )
    def get(self, request: Request, tenant_slug: str, cluster_id: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_events()))
        return self.get_paginated_response(ClusterEventSerializer(page, many=True).data)
