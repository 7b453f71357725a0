"""OpenAPI generation: every operation documents its errors, its auth and the role/scope it needs.

The additions are made on the finished operation (`get_operation`), so they apply whether or not a view
overrides responses or descriptions with @extend_schema:
- the error responses every operation can give, in the one Error schema;
- for tenant-scoped operations, the permission, the roles holding it and the token scope it needs (added by
  the subclass in apps/tenants/api/schema.py, which settings name: core cannot know roles);
- the Idempotency-Key header on POSTs whose handler is @idempotent;
- a request example built from the serializer when the view gives none;
- list views (paginated GETs on a collection path) documented as paginated lists with their filters.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

_ERROR = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(help_text="Stable machine-readable code, e.g. missing_scope."),
                "message": serializers.CharField(help_text="What went wrong, for people."),
                "fields": serializers.DictField(
                    child=serializers.ListField(child=serializers.CharField()),
                    help_text="Field name -> messages, for validation errors.",
                ),
            },
        )
    },
)

_COMMON_ERRORS = {
    "400": "Invalid input: malformed JSON, wrong types, unknown fields, values out of range, or a body, "
    "query string or header outside the request limits (docs/api.md, Limits).",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "Authenticated, but the role, the token's scopes or the tenant's status forbid this.",
    "404": "Not found, or it belongs to a tenant you are not in.",
    "429": "Rate limited; see the Retry-After header.",
    "431": "A request header is longer than the limit.",
}
_BODY_ERRORS = {"413": "The request body is too large."}
_POST_ERRORS = {"409": "Conflicts with current state."}
# Changing or deleting an object can conflict with its state too (terminating a terminating instance,
# deleting an attached volume).
_CHANGE_ERRORS = {"409": "Conflicts with current state."}
_IDEMPOTENT_ERRORS = {"422": "Idempotency-Key reused with a different request."}

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Any unique string of at most 255 characters (a UUID). Retrying with the same key and body "
    "replays the first response for 24 hours (header Idempotent-Replayed: true); the same key with another "
    "body answers 422 idempotency_key_reused. Failed requests are not remembered.",
)

# Example values for request fields, by field name, for requests whose view gives no example.
_EXAMPLE_BY_NAME: dict[str, Any] = {
    "name": "train-2",
    "email": "ada@example.com",
    "token": "Zk3v9Q...the secret from the invitation link",
    "slug": "acme",
    "reason": "Training a 70B model",
}
_EXAMPLE_BY_FIELD: list[tuple[type, Any]] = [
    (serializers.EmailField, "ada@example.com"),
    (serializers.SlugField, "acme"),
    (serializers.URLField, "https://example.com"),
    (serializers.UUIDField, "4f1c1d2e-0000-4000-8000-000000000000"),
    (serializers.DateTimeField, "2027-01-01T00:00:00Z"),
    (serializers.BooleanField, True),
    (serializers.IntegerField, 1),
    (serializers.DecimalField, "1.00"),
    (serializers.DictField, {}),
]


def example_value(name: str, field: serializers.Field) -> Any:
    if isinstance(field, serializers.ChoiceField) and field.choices:
        first = next(iter(field.choices))
        return [first] if isinstance(field, serializers.MultipleChoiceField) else first
    if isinstance(field, serializers.ListField):
        return [example_value(name, field.child)] if field.child is not None else []
    if isinstance(field, serializers.Serializer):
        return example_body(field)
    if name in _EXAMPLE_BY_NAME and isinstance(field, serializers.CharField):
        return _EXAMPLE_BY_NAME[name]
    for kind, value in _EXAMPLE_BY_FIELD:
        if isinstance(field, kind):
            if kind is serializers.IntegerField:
                return max(1, getattr(field, "min_value", None) or 1)
            return value
    return f"example-{name}"


def example_body(serializer: serializers.Serializer) -> dict[str, Any]:
    """A plausible request body: the required fields, or every writable field when none is required."""
    writable = {name: f for name, f in serializer.fields.items() if not f.read_only}
    required = {name: f for name, f in writable.items() if f.required}
    return {name: example_value(name, f) for name, f in (required or writable).items()}


class GpucloudAutoSchema(AutoSchema):
    def _method_perm(self) -> Any:
        permission_map = getattr(self.view, "permission_map", None) or {}
        return permission_map.get(self.method.upper())

    def _is_idempotent(self) -> bool:
        handler = getattr(self.view, self.method.lower(), None)
        return bool(getattr(handler, "idempotent", False))

    def _is_list_view(self, serializer: Any = None) -> bool:
        if super()._is_list_view(serializer):
            return True
        # A paginated GET on a collection path (the last segment is not a parameter) returns a page.
        return (
            self.method == "GET"
            and isinstance(self.view, GenericAPIView)
            and self.view.pagination_class is not None
            and not self.path.rstrip("/").endswith("}")
        )

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        from apps.core.serializers import StrictInputSerializer

        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictInputSerializer):
            schema["additionalProperties"] = False  # it answers 400 to a field it does not know
        return schema

    def get_override_parameters(self) -> list[Any]:
        params = list(super().get_override_parameters())
        if self.method in ("POST", "DELETE") and self._is_idempotent():
            params.append(IDEMPOTENCY_HEADER)
        return params

    def _stand_ins(self) -> None:
        """Give the view what it resolves per request, which the generator's fake request lacks (the
        tenants app's schema class, apps/tenants/api/schema.py, gives it a user and a tenant)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        self._stand_ins()
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        self._add_requirement(operation)
        self._add_errors(operation)
        self._add_request_example(operation)
        return operation

    def _add_requirement(self, operation: dict[str, Any]) -> None:
        """Document the permission and scope an operation needs (apps/tenants/api/schema.py)."""

    def _add_errors(self, operation: dict[str, Any]) -> None:
        errors = dict(_COMMON_ERRORS)
        if self.method in ("POST", "PUT", "PATCH"):
            errors.update(_BODY_ERRORS)
        if self.method in ("PUT", "PATCH", "DELETE"):
            errors.update(_CHANGE_ERRORS)
        if self.method == "POST":
            errors.update(_POST_ERRORS)
            if self._is_idempotent():
                errors.update(_IDEMPOTENT_ERRORS)
        if self.method == "DELETE" and self._is_idempotent():
            errors.update(_IDEMPOTENT_ERRORS)
        responses = operation.setdefault("responses", {})
        for code, text in errors.items():
            if code not in responses:
                response = OpenApiResponse(response=_ERROR, description=text)
                responses[code] = self._get_response_for_code(response, code)

    def _add_request_example(self, operation: dict[str, Any]) -> None:
        content = operation.get("requestBody", {}).get("content", {})
        if not content or any("examples" in c or "example" in c for c in content.values()):
            return
        serializer = self.get_request_serializer()
        if isinstance(serializer, type):
            serializer = serializer()
        if not isinstance(serializer, serializers.Serializer):
            return
        example = {"summary": "Example", "value": example_body(serializer)}
        for media in content.values():
            media["examples"] = {"Example": example}
