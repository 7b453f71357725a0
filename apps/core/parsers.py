"""The API's JSON parser: DRF's JSONParser with the limits of apps/core/strict_json.py.

Malformed JSON stays a 400 `parse_error` as before; a body that is JSON but outside the limits, or that no
program should send (NaN, duplicate keys, invalid UTF-8), is a 400 `invalid` naming the problem and, where
there is one, the field (`volumes.0.mount_path`). Nothing is written: the body is parsed when a view first
reads it, before any service runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils.http import parse_header_parameters
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from apps.core.errors import InvalidInput
from apps.core.strict_json import JsonLimits, JsonRefused, loads

_UTF8 = frozenset({"utf-8", "utf8"})


def json_limits() -> JsonLimits:
    return JsonLimits(
        max_depth=settings.REQUEST_JSON_MAX_DEPTH,
        max_keys_per_object=settings.REQUEST_JSON_MAX_KEYS_PER_OBJECT,
        max_items_per_array=settings.REQUEST_JSON_MAX_ITEMS_PER_ARRAY,
        max_entries=settings.REQUEST_JSON_MAX_ENTRIES,
        max_string_length=settings.REQUEST_MAX_STRING_LENGTH,
        max_number_length=settings.REQUEST_JSON_MAX_NUMBER_LENGTH,
    )


def refusal(exc: JsonRefused) -> InvalidInput:
    """The error envelope's 400: `fields` names the value when the problem has a path."""
    sentence = exc.message[:1].upper() + exc.message[1:]
    if not exc.path:
        return InvalidInput(sentence)
    return InvalidInput(f"{exc.path}: {exc.message}", fields={exc.path: [sentence]})


class StrictJSONParser(JSONParser):
    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        _, params = parse_header_parameters(media_type or "")
        charset = params.get("charset", "utf-8").lower()
        if charset not in _UTF8:
            raise InvalidInput(f'JSON bodies are UTF-8; the Content-Type names charset "{charset[:40]}".')
        raw = stream.read() if stream is not None else b""
        try:
            return loads(raw, json_limits())
        except JsonRefused as exc:
            raise refusal(exc) from None
        except ValueError as exc:  # json.JSONDecodeError: the syntax, as DRF's parser reports it
            raise ParseError(f"JSON parse error - {exc}") from None
