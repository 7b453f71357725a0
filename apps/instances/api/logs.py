"""GET /api/v1/tenants/{slug}/instances/{id}/logs: the instance's container log, for anyone who may read the
instance. The reading is the operator's, through the port in apps/instances/logs.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.serializers import StrictInputSerializer
from apps.instances import selectors
from apps.instances.api.views import InstanceObjectMixin
from apps.instances.logs import LogQuery, NoLog
from apps.tenants.roles import Perm

MAX_TAIL = 10_000
DEFAULT_TAIL = 200
MAX_SINCE = 7 * 24 * 3600
REASONS = [reason.value for reason in NoLog]  # the schema's InstanceLogReasonEnum (ENUM_NAME_OVERRIDES)


class QueryBooleanField(serializers.Field):
    """true/false (or 1/0) as in the other query strings (`delete_volumes`); DRF's BooleanField would also
    take yes, on and the like."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, str) and data.lower() in ("true", "1"):
            return True
        if isinstance(data, str) and data.lower() in ("false", "0"):
            return False
        self.fail("invalid")
        raise AssertionError  # not reached: fail() raises

    def to_representation(self, value: Any) -> bool:
        return bool(value)


class AwareDateTimeField(serializers.Field):
    """RFC 3339 with its offset ("2024-05-01T12:00:00.123456789Z"; digits beyond microseconds are dropped).
    A time without an offset is refused: DRF would read it in the server's time zone."""

    default_error_messages = {
        "invalid": "Must be an RFC 3339 date-time, e.g. 2024-05-01T12:00:00Z.",
        "naive": "Must include a time zone offset (Z or +00:00).",
    }

    def to_internal_value(self, data: Any) -> datetime:
        try:
            parsed = parse_datetime(data) if isinstance(data, str) else None
        except ValueError:  # a well-formed date that does not exist (February 30)
            parsed = None
        if parsed is None:
            self.fail("invalid")
        assert parsed is not None
        if parsed.tzinfo is None:
            self.fail("naive")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # year 1 at a negative offset
            self.fail("invalid")
            raise

    def to_representation(self, value: Any) -> str:
        return str(value)


class InstanceLogQuerySerializer(StrictInputSerializer):
    tail = serializers.IntegerField(min_value=1, max_value=MAX_TAIL, default=DEFAULT_TAIL)
    since = serializers.IntegerField(min_value=1, max_value=MAX_SINCE, required=False)
    since_time = AwareDateTimeField(required=False)
    previous = QueryBooleanField(required=False, default=False)
    timestamps = QueryBooleanField(required=False, default=False)

    def to_internal_value(self, data: Any) -> Any:
        empty = sorted(name for name, value in data.items() if value == "" and name in self.fields)
        if empty:  # "?tail=" is a client's bug, not "the default"
            raise serializers.ValidationError({name: ["Must not be empty."] for name in empty})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("since") is not None and attrs.get("since_time") is not None:
            raise serializers.ValidationError({"since_time": ["Give since or since_time, not both."]})
        return attrs

    def query(self) -> LogQuery:
        data = self.validated_data
        return LogQuery(
            tail_lines=data["tail"],
            since_seconds=data.get("since"),
            since_time=data.get("since_time"),
            previous=data["previous"],
            timestamps=data["timestamps"],
        )


class InstanceLogSerializer(serializers.Serializer):
    instance = serializers.UUIDField()
    available = serializers.BooleanField(
        help_text="false when there is no log to read; reason and message say why."
    )
    reason = serializers.ChoiceField(
        choices=REASONS,
        allow_null=True,
        help_text="Why there is no log: terminated (deleted with its pod), logs_unavailable (not in this "
        "region), no_pod (pending or stopped), no_container (not started yet, or no previous container), "
        "error (retry). null when available.",
    )
    message = serializers.CharField(allow_null=True, help_text="The reason, for people.")
    lines = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        help_text="Oldest first, without their newline; each starts with its timestamp when timestamps=true.",
    )
    truncated = serializers.BooleanField(help_text="true when tail (or the 8 MiB cap) cut older lines off.")
    last_timestamp = serializers.CharField(
        allow_null=True,
        help_text="RFC 3339 (nanoseconds) of the last line; null when there are no lines. To follow, ask "
        "again with since_time=last_timestamp and drop the lines already seen (since_time is inclusive).",
    )


class InstanceLogView(InstanceObjectMixin):
    permission_map = {"GET": Perm.INSTANCES_READ}
    serializer_class = InstanceLogSerializer  # type: ignore[assignment]
    pagination_class = None

    @extend_schema(
        summary="Read an instance's log",
        description="The container's stdout and stderr from its pod, newest `tail` lines. Always 200 for an "
        "instance you may read: when there is no log (terminated, no pod yet, not in this region) lines is "
        "empty, available is false and reason says why. Unknown or empty parameters are a 400.",
        parameters=[
            OpenApiParameter(
                "tail",
                {"type": "integer", "minimum": 1, "maximum": MAX_TAIL, "default": DEFAULT_TAIL},
                description="Lines from the end.",
            ),
            OpenApiParameter(
                "since",
                {"type": "integer", "minimum": 1, "maximum": MAX_SINCE},
                description="Only lines of the last N seconds (at most 7 days); not with since_time.",
            ),
            OpenApiParameter(
                "since_time",
                OpenApiTypes.DATETIME,
                description="Only lines at or after this RFC 3339 time, with its offset (Z or +hh:mm); "
                "not with since.",
            ),
            OpenApiParameter(
                "previous", bool, description="The previous container's log (after a crash or restart)."
            ),
            OpenApiParameter("timestamps", bool, description="Prefix each line with its RFC 3339 time."),
        ],
        responses={200: InstanceLogSerializer},
        examples=[
            OpenApiExample(
                "Running",
                response_only=True,
                value={
                    "instance": "4f1c1d2e-0000-4000-8000-000000000000",
                    "available": True,
                    "reason": None,
                    "message": None,
                    "lines": ["sshd: listening on 0.0.0.0 port 22", "epoch 1: loss 2.31"],
                    "truncated": False,
                    "last_timestamp": "2024-05-01T12:00:03.512034101Z",
                },
            ),
            OpenApiExample(
                "No pod",
                response_only=True,
                value={
                    "instance": "4f1c1d2e-0000-4000-8000-000000000000",
                    "available": False,
                    "reason": "no_pod",
                    "message": "No pod is running for this instance.",
                    "lines": [],
                    "truncated": False,
                    "last_timestamp": None,
                },
            ),
        ],
    )
    def get(self, request: Request, tenant_slug: str, instance_id: str) -> Response:
        instance = self.get_object()  # another tenant's instance answers 404 whatever the query
        # A plain dict: DRF reads "" in a QueryDict as "not given".
        params = InstanceLogQuerySerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        log = selectors.instance_log(instance=instance, query=params.query())
        body = {
            "instance": instance.pk,
            "available": log.missing is None,
            "reason": log.missing.value if log.missing is not None else None,
            "message": log.message,
            "lines": log.lines,
            "truncated": log.truncated,
            "last_timestamp": log.last_timestamp,
        }
        return Response(InstanceLogSerializer(body).data)
