"""OpenAPI generation: every operation documents its errors, its auth and the role/scope it needs."""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from apps.tenants.roles import PERM_SCOPE, ROLE_PERMISSIONS

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
    "400": "Invalid input: malformed JSON, wrong types, unknown fields, values out of range.",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "Authenticated, but the role, the token's scopes or the tenant's status forbid this.",
    "404": "Not found, or it belongs to a tenant you are not in.",
    "413": "The request body is too large.",
    "429": "Rate limited; see the Retry-After header.",
}


class GpucloudAutoSchema(AutoSchema):
    def _method_perm(self) -> Any:
        permission_map = getattr(self.view, "permission_map", None) or {}
        return permission_map.get(self.method.upper())

    def get_description(self) -> str:
        description = super().get_description() or ""
        perm = self._method_perm()
        if perm is None:
            return description
        roles = sorted(role.value for role, perms in ROLE_PERMISSIONS.items() if perm in perms)
        needs = (
            f"\n\n**Requires** permission `{perm.value}` (roles: {', '.join(roles)}); "
            f"API tokens need the scope `{PERM_SCOPE[perm]}`."
        )
        return description + needs

    def get_response_serializers(self) -> Any:
        responses = super().get_response_serializers()
        if not isinstance(responses, dict):
            status = "201" if self.method == "POST" else "200"
            if self.method == "DELETE" and responses is None:
                status = "204"
            responses = {status: responses}
        for code, text in _COMMON_ERRORS.items():
            if code == "413" and self.method in ("GET", "DELETE"):
                continue
            responses.setdefault(code, OpenApiResponse(response=_ERROR, description=text))
        if self.method == "POST":
            responses.setdefault(
                "409", OpenApiResponse(response=_ERROR, description="Conflicts with current state.")
            )
            responses.setdefault(
                "422",
                OpenApiResponse(
                    response=_ERROR, description="Idempotency-Key reused with a different request."
                ),
            )
        return responses

    def get_override_parameters(self) -> list[Any]:
        params = list(super().get_override_parameters())
        if self.method == "POST":
            from drf_spectacular.types import OpenApiTypes
            from drf_spectacular.utils import OpenApiParameter

            params.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Any unique string (a UUID). Retrying with the same key and body replays "
                    "the first response for 24 hours; the same key with another body answers 422.",
                )
            )
        return params
