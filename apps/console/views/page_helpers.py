"""What the console's pages share for their forms and lists: the API's own validation of a form's input, a
service's refusal shown on the form, UTC days from date fields, pagination that keeps the filters, and the
fingerprint a polled part compares to answer 204 while nothing changed."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework import serializers

from apps.core.errors import DomainError, InvalidInput, flatten_field_errors


def validated(serializer_class: type[serializers.Serializer], data: dict[str, Any]) -> dict[str, Any]:
    """The API's own validation of the same input; its field errors become an InvalidInput for the form."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data)
    fields: dict[str, list[str]] = {}
    for key, problems in flatten_field_errors(serializer.errors).items():
        fields.setdefault(key.split(".")[0], []).extend(problems)  # "ssh_key_ids.0" is the ssh_key_ids field
    name, problems = next(iter(fields.items()))
    message = problems[0] if name == "non_field_errors" else f"{name}: {problems[0]}"
    raise InvalidInput(message, fields=fields)


def form_error(exc: DomainError) -> dict[str, Any]:
    """A service's refusal on the page's form: the message above it, each field's problems beside the field
    (the templates' `error` and `field_errors`)."""
    return {"error": exc.message, "field_errors": exc.fields}


def parse_day(raw: str, field: str) -> date | None:
    """A YYYY-MM-DD date field; None when empty, a field error when it is not a date."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"{field}: enter a date as YYYY-MM-DD.", fields={field: ["Enter a date as YYYY-MM-DD."]}
        ) from exc


def day_start(day: date) -> datetime:
    """UTC midnight at the start of `day`."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def paginate(request: HttpRequest, items: QuerySet[Any], size: int) -> tuple[Page[Any], str]:
    """The requested page, and the other query parameters for the page links."""
    page_obj = Paginator(items, size).get_page(request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)
    return page_obj, kept.urlencode()


def poll_fingerprint(*parts: Any) -> str:
    """A short digest of what a polled part shows; its poll URL carries it as `v`."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def unchanged(request: HttpRequest, fingerprint: str) -> bool:
    """The poll asked with the fingerprint of what it shows now: nothing to swap (answer 204)."""
    return request.GET.get("v") == fingerprint
