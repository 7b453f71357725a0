from typing import Any, ClassVar

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.core import request_context
from apps.core.errors import InvalidInput
from apps.core.idempotency import idempotent
from apps.core.pagination import KeysetPagination
from apps.instances import selectors, services, waiting
from apps.instances.api.filtering import LiveFilterSet
from apps.instances.api.serializers import (
    InstanceEventSerializer,
    InstanceLaunchSerializer,
    InstanceSerializer,
    InstanceUpdateSerializer,
)
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Action, State
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm


class InstanceFilter(LiveFilterSet):
    state = django_filters.MultipleChoiceFilter(choices=[(s.value, s.value) for s in State])
    region = django_filters.CharFilter(field_name="region__slug", max_length=40)
    instance_type = django_filters.CharFilter(field_name="instance_type__slug", max_length=40)
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=63)

    class Meta:
        model = Instance
        fields: list[str] = []


class InstanceListView(TenantAPIView):
    permission_map = {"GET": Perm.INSTANCES_READ, "POST": Perm.INSTANCES_WRITE}
    serializer_class = InstanceSerializer
    filterset_class = InstanceFilter
    ordering_fields = ["created_at", "name", "state"]
    pagination_class = KeysetPagination  # a tenant's instances grow with its history: no deep offsets

    def get_queryset(self) -> QuerySet[Instance]:
        return selectors.instances_for_api(tenant=self.tenant)

    @extend_schema(summary="List instances", description="Terminated instances are hidden by default.")
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(InstanceSerializer(page, many=True).data)

    @extend_schema(
        summary="Launch an instance",
        description="Admitted against the tenant's quota atomically (409 quota_exceeded with the limit and "
        "the current use) and against live capacity (409 no_capacity). Honours Idempotency-Key.",
        request=InstanceLaunchSerializer,
        responses={201: InstanceSerializer},
        examples=[
            OpenApiExample(
                "One H100",
                request_only=True,
                value={
                    "name": "train-1",
                    "instance_type": "gpu-h100x1",
                    "region": "us-east",
                    "image": "pytorch",
                    "ssh_key_ids": ["4f1c1d2e-0000-4000-8000-000000000000"],
                    "env": {"WANDB_PROJECT": "llm"},
                    "auto_stop_after": 3600,
                    "tags": {"team": "ml", "project": "llm"},
                },
            )
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = InstanceLaunchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        instance = services.instance_launch(
            actor=acting_user(request),
            tenant=self.tenant,
            req=services.LaunchRequest(**serializer.validated_data),
        )
        if "attachment_list" not in instance.__dict__:  # services._as_listed left it to the read
            instance = selectors.instances_for_api(tenant=self.tenant).get(pk=instance.pk)
        return Response(InstanceSerializer(instance).data, status=201)


class InstanceObjectMixin(TenantAPIView):
    lookup_url_kwarg = "instance_id"
    serializer_class = InstanceSerializer

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        request_context.update(instance_id=str(kwargs.get("instance_id") or "") or None)  # for log lines
        super().initial(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Instance]:
        return selectors.instances_for_api(tenant=self.tenant)

    def render(self, instance: Instance, status: int = 200) -> Response:
        return Response(InstanceSerializer(self.get_queryset().get(pk=instance.pk)).data, status=status)


class InstanceDetailView(InstanceObjectMixin):
    permission_map = {
        "GET": Perm.INSTANCES_READ,
        "PATCH": Perm.INSTANCES_WRITE,
        "DELETE": Perm.INSTANCES_WRITE,
    }
    allowed_when_suspended = frozenset({"DELETE", "PATCH"})

    @extend_schema(
        summary="Show an instance, or wait for a state",
        description=(
            "With `wait`, a long-poll: answers as soon as the instance is in one of the named states, or is "
            "`failed` or `terminated` (it cannot get anywhere else by itself), or after `timeout` seconds, "
            "always 200 with the instance as it is then. The `Gpucloud-Wait` header says which: `reached`, "
            "`ended` or `timeout`. A server with too many waiting requests answers 503 `too_many_waiters` "
            'with Retry-After. See docs/api.md "Waiting for a state".'
        ),
        parameters=[
            OpenApiParameter(
                "wait",
                str,
                description="States to wait for, separated by commas (e.g. `running` or `stopped,failed`): "
                + ", ".join(State),
            ),
            OpenApiParameter(
                "timeout",
                int,
                description=f"Seconds to wait, 1 to {waiting.MAX_TIMEOUT_SECONDS} (default "
                f"{waiting.DEFAULT_TIMEOUT_SECONDS}); only with `wait`.",
            ),
        ],
        responses={200: InstanceSerializer},
    )
    def get(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        awaited = waiting.parse(request.query_params)
        instance = self.get_object()
        if awaited is None:
            return Response(InstanceSerializer(instance).data)
        states = selectors.instances_of(tenant=self.tenant).filter(pk=instance.pk)
        outcome = waiting.wait_for_state(
            instance.pk,
            awaited[0],
            awaited[1],
            current_state=lambda: states.values_list("state", flat=True).first(),
        )
        response = self.render(instance)
        response[waiting.OUTCOME_HEADER] = outcome.value
        return response

    @extend_schema(
        summary="Rename an instance or change its tags",
        description="`tags` is a merge patch: a key with a string sets it, a key with null removes it, "
        "keys not named are kept (docs/billing.md \"Tags\"). A cluster's node takes its cluster's tags "
        "(409 cluster_node). Both changes are made, or neither.",
        request=InstanceUpdateSerializer,
        responses=InstanceSerializer,
        examples=[
            OpenApiExample("Retag", request_only=True, value={"tags": {"team": "research", "sweep": None}})
        ],
    )
    def patch(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        instance = self.get_object()  # another tenant's instance answers 404 whatever the body
        serializer = InstanceUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not data:
            raise InvalidInput("Give name or tags.", fields={"name": ["Give name or tags."]})
        actor = acting_user(request)
        with transaction.atomic():  # both changes or neither
            if "tags" in data:
                instance = services.instance_tags_update(actor=actor, instance=instance, changes=data["tags"])
            if "name" in data:
                instance = services.instance_rename(actor=actor, instance=instance, name=data["name"])
        return self.render(instance)

    @extend_schema(
        summary="Terminate an instance",
        description="Its pod and ephemeral disk are deleted. Attached volumes are kept (available again) "
        "unless delete_volumes=true: then they are deleted once the instance is terminated.",
        parameters=[
            OpenApiParameter(
                "delete_volumes", bool, description="Delete the attached volumes too (default false)."
            )
        ],
        responses={202: InstanceSerializer},
    )
    @idempotent  # a client retrying after a lost answer gets the original one, not a 409
    def delete(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        instance = self.get_object()  # another tenant's instance answers 404 whatever the query
        instance = services.instance_act(
            actor=acting_user(request),
            instance=instance,
            action=Action.TERMINATE,
            delete_volumes=_flag(request, "delete_volumes"),
        )
        return self.render(instance, status=202)


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise InvalidInput(f"{name}: use true or false.", fields={name: ["Use true or false."]})


class InstanceActionView(InstanceObjectMixin):
    instance_action: ClassVar[Action]
    permission_map = {"POST": Perm.INSTANCES_WRITE}

    def post(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        instance = self.get_object()  # another tenant's instance answers 404 whatever the body
        if request.data:
            raise InvalidInput(
                "This action takes no body.", fields={name: ["Unknown field."] for name in request.data}
            )
        instance = services.instance_act(
            actor=acting_user(request), instance=instance, action=self.instance_action
        )
        return self.render(instance, status=202)


class InstanceStopView(InstanceActionView):
    instance_action = Action.STOP
    allowed_when_suspended = frozenset({"POST"})  # stopping costs nothing; a suspended tenant may stop

    @extend_schema(
        summary="Stop an instance",
        description="Deletes the pod; data volumes are kept.",
        request=None,
        responses={202: InstanceSerializer},
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        return super().post(request, tenant_slug, instance_id)


class InstanceStartView(InstanceActionView):
    instance_action = Action.START

    @extend_schema(
        summary="Start a stopped instance",
        description="Admitted against quota like a launch.",
        request=None,
        responses={202: InstanceSerializer},
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        return super().post(request, tenant_slug, instance_id)


class InstanceRestartView(InstanceActionView):
    instance_action = Action.RESTART

    @extend_schema(summary="Restart a running instance", request=None, responses={202: InstanceSerializer})
    @idempotent
    def post(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        return super().post(request, tenant_slug, instance_id)


class InstanceEventListView(InstanceObjectMixin):
    permission_map = {"GET": Perm.INSTANCES_READ}
    serializer_class = InstanceEventSerializer  # type: ignore[assignment]
    ordering_fields = ["created_at"]
    pagination_class = KeysetPagination

    def get_events(self) -> QuerySet[InstanceEvent]:
        return selectors.events_of(instance=self.get_object())

    @extend_schema(summary="List an instance's events", description="Oldest first: the instance's timeline.")
    def get(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        page = self.paginate_queryset(self.get_events())
        return self.get_paginated_response(InstanceEventSerializer(page, many=True).data)
