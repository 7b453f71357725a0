from typing import Any

from rest_framework import pagination
from rest_framework.request import Request

from apps.core.errors import InvalidInput
from apps.core.filters import INT_MAX


def _whole_number(request: Request, name: str, minimum: int, maximum: int = INT_MAX) -> int | None:
    """The query parameter as an int within the bounds, None when absent; anything else is a 400
    naming it (DRF's pagination quietly ignored a bad value, so `limit=abc` looked like it worked)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= maximum:
        message = f"A whole number from {minimum} to {maximum}."
        raise InvalidInput(f"Invalid {name}: {message}", fields={name: [message]})
    return int(raw)


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def get_limit(self, request: Request) -> int | None:
        limit = _whole_number(request, self.limit_query_param, 1)
        if limit is None:
            return self.default_limit
        return min(limit, self.max_limit) if self.max_limit else limit

    def get_offset(self, request: Request) -> int:
        return _whole_number(request, self.offset_query_param, 0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        minimums = {self.limit_query_param: 1, self.offset_query_param: 0}
        for param in params:
            if param["name"] in minimums:
                param["schema"].update(minimum=minimums[param["name"]], maximum=INT_MAX)
        return params
