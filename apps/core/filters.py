"""Query-string filters that refuse what they cannot read: django-filter's defaults quietly drop a bad
boolean (so `include_terminated=7` looked accepted), take 0.5 for an integer, and pass a UTC offset
PostgreSQL cannot store straight to the database (a 500)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend

from apps.core.errors import InvalidInput

# PostgreSQL's integer; anything larger would fail in the database instead of answering 400.
INT_MAX = 2**31 - 1


class _BooleanField(forms.Field):
    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise forms.ValidationError("Must be true or false.", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = _BooleanField


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", -INT_MAX)
        kwargs.setdefault("max_value", INT_MAX)
        super().__init__(*args, **kwargs)


class _UtcDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from exc


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """ISO 8601, compared in UTC: "-21:25" is a valid ISO offset but outside PostgreSQL's range."""

    field_class = _UtcDateTimeField


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend, except that an empty value for a filter that is not free text (`?status=`,
    `?since=`) is a 400 naming it: the schema's enum, date-time or boolean does not admit "", and quietly
    reading it as "no filter" let a client's bug look like an answer."""

    def get_filterset(self, request: Any, queryset: Any, view: Any) -> Any:
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            empty = sorted(
                name
                for name, declared in filterset.filters.items()
                if "" in request.query_params.getlist(name)
                and not issubclass(declared.field_class, forms.CharField)
            )
            if empty:
                raise InvalidInput(
                    f"Empty filter: {', '.join(empty)}.",
                    fields={name: ["Must not be empty."] for name in empty},
                )
        return filterset
