"""Filters the instance and cluster lists share."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from apps.core import filters

TERMINATED = "terminated"


class LiveFilterSet(django_filters.FilterSet):
    """Terminated rows are history: hidden unless `include_terminated` or a `state` filter asks for them."""

    include_terminated = filters.BooleanFilter(
        method="filter_terminated", help_text="Terminated ones are hidden unless true."
    )

    def filter_terminated(self, queryset: QuerySet[Any], name: str, value: bool) -> QuerySet[Any]:
        return queryset  # applied in filter_queryset, with the state filter in view

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_terminated") and not self.form.cleaned_data.get("state"):
            queryset = queryset.exclude(state=TERMINATED)
        return queryset
