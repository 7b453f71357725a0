from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import Field, Q, QuerySet
from rest_framework import pagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

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


CURSOR_SALT = "apps.core.pagination.cursor"
_BAD_CURSOR = "Not a cursor this list gave out: follow the next or previous link as it is."


def _bad_cursor(message: str = _BAD_CURSOR) -> InvalidInput:
    return InvalidInput(f"Invalid cursor: {message}", fields={"cursor": [message]})


@dataclass(frozen=True)
class _Key:
    field: Field[Any, Any]
    descending: bool

    @property
    def term(self) -> str:
        return f"-{self.field.name}" if self.descending else self.field.name


def _keys(queryset: QuerySet[Any]) -> list[_Key]:
    """The queryset's order as (field, direction) ending with the primary key, so that every row has its
    own position: the order the view asked for (OrderingFilter) or the model's default."""
    model = queryset.model
    terms = list(queryset.query.order_by) or (
        list(model._meta.ordering) if queryset.query.default_ordering else []
    )
    keys: list[_Key] = []
    for term in terms:
        if not isinstance(term, str) or term == "?" or "__" in term:
            raise ImproperlyConfigured(f"Keyset pagination cannot order {model.__name__} by {term!r}.")
        name = term.lstrip("-")
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        if not field.concrete or field.null or field.is_relation:
            raise ImproperlyConfigured(f"Keyset pagination needs a non-null column, not {name!r}.")
        keys.append(_Key(field, term.startswith("-")))
        if field.primary_key:
            return keys
    return [*keys, _Key(model._meta.pk, False)]


def _after(keys: list[_Key], values: list[Any], *, backward: bool) -> Q:
    """Rows strictly after `values` in the order of `keys` (before them when backward), written as "the
    first key at or after its value, and not (equal to it and not after on the other keys)": PostgreSQL
    starts the index scan at the first key's value, and estimates the whole as that bound alone.

    The expanded row comparison (`a < x OR (a = x AND b > y)`, under the same bound) is the same set of
    rows, but the planner multiplied the bound's selectivity by the OR's, which repeats it: for a deep
    page of a tenant with a long history it expected a handful of rows, and read and sorted every row
    after the cursor (50,000 at the middle of 100,000 instances) instead of the next 51 along the index
    (bench/api_throughput.py found it)."""

    def step(key: _Key, strict: bool) -> str:
        later = key.descending != backward
        return ("lt" if later else "gt") + ("" if strict else "e")

    last = keys[-1]
    after = Q(**{f"{last.field.name}__{step(last, True)}": values[-1]})
    for key, value in zip(reversed(keys[:-1]), reversed(values[:-1]), strict=True):
        equal = Q(**{key.field.name: value})
        after = Q(**{f"{key.field.name}__{step(key, False)}": value}) & ~(equal & ~after)
    return after


class KeysetPagination(LimitOffsetPagination):
    """Pages by position (`cursor`) instead of by offset, for the lists that grow with a tenant's history.

    A page is the rows after the last one of the previous page in the list's order (ending with the
    primary key, so no two rows tie): one indexed range scan, as fast at the 1,000th page as at the first,
    and no row is skipped or repeated when rows are inserted or deleted between pages. The cursor is the
    position signed with the secret key (a client cannot forge one; the query stays scoped to the tenant
    whatever the cursor says), bound to the list's model and order.

    `count` is counted up to COUNT_CAP + 1 rows and capped: a tenant with 100,000 instances does not pay a
    COUNT(*) over all of them on every page; `count_exact` is false when there are more than COUNT_CAP.

    `offset` still works (clients written for LimitOffsetPagination): with it the page is read by offset
    and `next` and `previous` are offset links, as before."""

    cursor_query_param = "cursor"
    # Counting is the one cost of a page that grows with the list: up to the cap it is a walk of the same
    # index as the page (about 1.5 us an entry), so 10,000 would cost a 100,000-instance tenant ~15 ms a
    # request, 1,000 ~1.5 ms. Past 1,000 a client wants a filter, not a number.
    COUNT_CAP = 1_000

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        self.request = request
        self.limit = self.page_size = self.get_limit(request) or self.default_limit
        self.keys = _keys(queryset)
        token = request.query_params.get(self.cursor_query_param)
        if token is not None and self.offset_query_param in request.query_params:
            message = "Use either cursor or offset, not both."
            raise InvalidInput(message, fields={self.cursor_query_param: [message]})
        position, backward = self._decode(token, queryset.model) if token is not None else (None, False)
        ordered = queryset.order_by(*(key.term for key in self.keys))
        # In the list's order: PostgreSQL then counts along the index that serves the page (the partial
        # index of live instances, say) instead of picking another and filtering the tenant's history.
        capped = ordered.values("pk")[: self.COUNT_CAP + 1].count()
        self.count, self.count_exact = min(capped, self.COUNT_CAP), capped <= self.COUNT_CAP
        self.by_offset = self.offset_query_param in request.query_params
        if self.by_offset:
            self.offset = self.start = self.get_offset(request)
            rows = list(ordered[self.start : self.start + self.page_size + 1])
            self.has_more = len(rows) > self.page_size
            return rows[: self.page_size]
        if backward:
            ordered = ordered.reverse()
        if position is not None:
            ordered = ordered.filter(_after(self.keys, position, backward=backward))
        rows = list(ordered[: self.page_size + 1])
        more, rows = len(rows) > self.page_size, rows[: self.page_size]
        if backward:
            rows.reverse()
        first, last = (rows[0], rows[-1]) if rows else (None, None)
        self.next_token = self._encode(last, False) if last is not None and (more or backward) else None
        self.previous_token = (
            self._encode(first, True)
            if first is not None and position is not None and (more or not backward)
            else None
        )
        return rows

    def _encode(self, row: Any, backward: bool) -> str:
        values = [key.field.value_to_string(row) for key in self.keys]
        payload = {"m": row._meta.label_lower, "o": [key.term for key in self.keys], "v": values}
        if backward:
            payload["b"] = 1
        return signing.dumps(payload, salt=CURSOR_SALT, compress=True)

    def _decode(self, token: str, model: Any) -> tuple[list[Any], bool]:
        try:
            payload = signing.loads(token, salt=CURSOR_SALT)
        except signing.BadSignature:
            raise _bad_cursor() from None
        if not isinstance(payload, dict) or not isinstance(payload.get("v"), list):
            raise _bad_cursor()
        if payload.get("m") != model._meta.label_lower or payload.get("o") != [k.term for k in self.keys]:
            raise _bad_cursor("It was given for another list or another ordering: start again without it.")
        try:
            values = [key.field.to_python(value) for key, value in zip(self.keys, payload["v"], strict=True)]
        except (ValidationError, ValueError, TypeError, KeyError):
            raise _bad_cursor() from None
        return values, bool(payload.get("b"))

    def _link(self, **params: Any) -> str:
        assert self.request is not None  # set by paginate_queryset
        url = self.request.build_absolute_uri()
        for name in (self.cursor_query_param, self.offset_query_param):
            url = remove_query_param(url, name)
        for name, value in params.items():
            url = replace_query_param(url, name, value)
        return url

    def get_next_link(self) -> str | None:
        if self.by_offset:
            return self._link(offset=self.start + self.page_size) if self.has_more else None
        return self._link(cursor=self.next_token) if self.next_token else None

    def get_previous_link(self) -> str | None:
        if self.by_offset:
            if self.start <= 0:
                return None
            return self._link(offset=max(0, self.start - self.page_size))  # offset=0: stay in offset mode
        return self._link(cursor=self.previous_token) if self.previous_token else None

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.count,
                "count_exact": self.count_exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        response = super().get_paginated_response_schema(schema)
        properties = response["properties"]
        properties["count"]["description"] = (
            f"Rows after filters, counted up to {self.COUNT_CAP:,}: a larger list shows {self.COUNT_CAP:,} "
            "with count_exact false."
        )
        properties["count_exact"] = {
            "type": "boolean",
            "description": f"False when the list has more than {self.COUNT_CAP:,} rows and count is capped.",
        }
        for link in ("next", "previous"):
            properties[link]["example"] = "https://gpucloud.example/api/v1/...?cursor=eyJtIjoi...&limit=50"
        properties["next"]["description"] = (
            "The next page (a cursor link; an offset link when offset was given), null on the last."
        )
        response["required"] = ["count", "count_exact", "results"]
        return response

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.offset_query_param:
                param["description"] = "Deprecated for this list: follow the cursor of next instead."
        cursor = {
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": "The position to read from, as given in the next or previous link (opaque).",
            "schema": {"type": "string"},
        }
        return [cursor, *params]
