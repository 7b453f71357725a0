"""Limits on the parts of a request that Django reads before any view: headers and cookies, the query
string, and form bodies (JSON bodies have their own parser, apps/core/parsers.py).

Django is lenient where a public service should not be: it replaces invalid UTF-8 in a query or form with
U+FFFD and keeps a broken `%zz` as it is, keeps the last of repeated parameters without a word, and passes a
cookie whose quoted value unescapes to NUL (`"\\000"`) to the session store, where PostgreSQL refuses it
with a 500. RequestLimitsMiddleware refuses all of that up front, with a 400 naming the header, parameter or
field (431 for an overlong header): the error envelope under /api/, a 400 page elsewhere. The limits are
settings (docs/api.md "Limits").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve

from apps.core.errors import error_body

# C0 controls and DEL; a tab is whitespace in a header (RFC 9110 section 5.5).
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# In decoded parameter values tab, line feed and carriage return are text (a textarea's lines).
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORM = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


class Refused(Exception):
    def __init__(self, message: str, *, status: int = 400, code: str = "invalid", field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


def _shown(text: str, limit: int = 40) -> str:
    """A client's name quoted in a message: short and printable."""
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


# --- headers and cookies -----------------------------------------------------------------------------


def _header_name(meta_key: str) -> str:
    return meta_key.removeprefix("HTTP_").replace("_", "-").title()


def check_headers(meta: dict[str, Any]) -> None:
    limit: int = settings.REQUEST_HEADER_MAX_LENGTH
    for key, value in meta.items():
        if not (key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")) or not isinstance(
            value, str
        ):
            continue
        name = _header_name(key)
        if len(value) > limit:
            raise Refused(
                f"The {name} header has {len(value)} characters; at most {limit} are allowed.",
                status=431,
                code="header_too_large",
                field=name,
            )
        if _HEADER_CONTROL.search(value):
            raise Refused(f"The {name} header contains control characters.", field=name)


def check_cookies(cookies: dict[str, str]) -> None:
    """A quoted cookie value may unescape to control characters (`"\\000"`) the raw header did not hold."""
    for name, value in cookies.items():
        if _VALUE_CONTROL.search(name) or _VALUE_CONTROL.search(value):
            raise Refused(f'The cookie "{_shown(name)}" contains control characters.', field="Cookie")


# --- query strings and url-encoded forms -------------------------------------------------------------


def _decode(part: bytes, *, what: str, field: str) -> str:
    label = f'{what} "{_shown(field)}"'
    if _BAD_PERCENT.search(part):
        raise Refused(
            f"The {label} has an invalid percent-encoding (a % must be followed by two hex digits).",
            field=field,
        )
    try:
        text = unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(f"The {label} is not valid UTF-8.", field=field) from None
    if _VALUE_CONTROL.search(text):
        raise Refused(f"The {label} contains control characters.", field=field)
    return text


def check_urlencoded(
    raw: bytes, *, what: str, max_params: int, max_value_length: int
) -> list[tuple[str, str]]:
    """The (name, value) pairs of a query string or form body (`what` is "query parameter" or "form
    field"), or Refused naming the first problem."""
    segments = [segment for segment in raw.split(b"&") if segment]
    if len(segments) > max_params:
        raise Refused(f"The request has {len(segments)} {what}s; at most {max_params} are allowed.")
    pairs = []
    for segment in segments:
        raw_name, _, raw_value = segment.partition(b"=")
        name = _decode(raw_name, what=what, field=raw_name.decode("latin-1"))
        value = _decode(raw_value, what=what, field=name)
        longest = max(len(name), len(value))
        if longest > max_value_length:
            raise Refused(
                f'The {what} "{_shown(name)}" has {longest} characters; '
                f"at most {max_value_length} are allowed.",
                field=name,
            )
        pairs.append((name, value))
    return pairs


def _raw_query(request: HttpRequest) -> bytes:
    query = request.META.get("QUERY_STRING", "")
    try:
        return query.encode("latin-1")  # WSGI: the bytes as received, one character each (PEP 3333)
    except UnicodeEncodeError:
        return query.encode("utf-8")  # ASGI: already decoded


def check_query(request: HttpRequest) -> list[tuple[str, str]]:
    raw = _raw_query(request)
    limit: int = settings.REQUEST_QUERY_MAX_LENGTH
    if len(raw) > limit:
        raise Refused(f"The query string has {len(raw)} bytes; at most {limit} are allowed.")
    return check_urlencoded(
        raw,
        what="query parameter",
        max_params=settings.REQUEST_QUERY_MAX_PARAMS,
        max_value_length=settings.REQUEST_QUERY_MAX_VALUE_LENGTH,
    )


def _multi_valued(request: HttpRequest) -> frozenset[str]:
    """Query parameters the API view takes more than once: its filterset's multiple-choice filters
    (`?state=running&state=stopped`), and those it names in `repeatable_query_params` (the usage report's
    `?tag=team:ml&tag=env:prod`)."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return frozenset()
    view_class = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    declared_repeatable = frozenset(getattr(view_class, "repeatable_query_params", ()))
    filterset = getattr(view_class, "filterset_class", None)
    if filterset is None:
        return declared_repeatable
    return declared_repeatable | frozenset(
        name
        for name, declared in filterset.base_filters.items()
        if issubclass(declared.field_class, forms.MultipleChoiceField)
    )


def check_repeats(pairs: Iterable[tuple[str, str]], multi_valued: Callable[[], frozenset[str]]) -> None:
    counts = Counter(name for name, _ in pairs)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        allowed = multi_valued()
        for name in repeated:
            if name not in allowed:
                raise Refused(
                    f'The query parameter "{_shown(name)}" is given {counts[name]} times; '
                    "it takes one value.",
                    field=name,
                )


def check_form(request: HttpRequest) -> None:
    content_type = request.content_type or ""
    try:
        if content_type == _FORM:
            check_urlencoded(
                request.body,
                what="form field",
                max_params=settings.REQUEST_FORM_MAX_FIELDS,
                max_value_length=settings.REQUEST_MAX_STRING_LENGTH,
            )
        elif content_type == _MULTIPART and request.method == "POST" and not _is_api(request):
            # Django counts the fields (DATA_UPLOAD_MAX_NUMBER_FIELDS) and decodes leniently; the values
            # get the limits of url-encoded ones. (Under /api/ DRF answers 415 to any form.)
            limit: int = settings.REQUEST_MAX_STRING_LENGTH
            for name, values in request.POST.lists():
                for value in values:
                    if len(value) > limit:
                        raise Refused(
                            f'The form field "{_shown(name)}" has {len(value)} characters; at most {limit} '
                            "are allowed.",
                            field=name,
                        )
                    if _VALUE_CONTROL.search(value):
                        raise Refused(
                            f'The form field "{_shown(name)}" contains control characters.', field=name
                        )
    except RequestDataTooBig:
        raise Refused(
            f"The request body must be at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            status=413,
            code="request_too_large",
        ) from None
    except (SuspiciousOperation, MultiPartParserError) as exc:
        raise Refused("The form body could not be read: too many fields, or malformed.") from exc


# --- the middleware -----------------------------------------------------------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def refused_response(request: HttpRequest, refused: Refused) -> HttpResponse:
    if _is_api(request):
        fields = {refused.field: [refused.message]} if refused.field else {}
        return JsonResponse(error_body(refused.code, refused.message, fields), status=refused.status)
    page = render_to_string(
        "400.html", {"message": refused.message, "status": refused.status}, request=request
    )
    return HttpResponse(page, status=refused.status)


class RequestLimitsMiddleware:
    """Refuses hostile headers, cookies, query strings and form bodies before any other code reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_headers(request.META)
            check_cookies(request.COOKIES)
            pairs = check_query(request)
            if _is_api(request):
                check_repeats(pairs, lambda: _multi_valued(request))
            check_form(request)
        except Refused as refused:
            return refused_response(request, refused)
        return self.get_response(request)
