"""Tags: the key/value labels a customer puts on instances, clusters, volumes and buckets, checked here and
nowhere else (docs/billing.md "Tags").

The rules, like the big clouds' labels:

- at most MAX_TAGS tags on one resource;
- a key is 1 to 63 characters of a-z, 0-9, `_`, `.` and `-`, starting with a letter or digit. Keys are
  case-insensitive: `Team` is stored as `team` (so two keys that differ only in case, in one request, are
  refused). No `:` (the usage filter is `tag=<key>:<value>`) and no spaces;
- keys in the platform's namespace are reserved: `gpucloud`, and any key starting with `gpucloud.`,
  `gpucloud-` or `gpucloud_`;
- a value is a string of 0 to 255 characters, kept exactly as given (case included), without control
  characters.

A refusal is a 400 naming the field (`tags`, or the query parameter) and the tag. Changes to a resource's
tags are a JSON merge patch (RFC 7396): a key with a string is set, a key with null is removed, keys not
named are kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.validation import invalid

MAX_TAGS = 50
MAX_KEY = 63
MAX_VALUE = 255
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
RESERVED = "gpucloud"
RESERVED_SEPARATORS = (".", "-", "_")
KEY_RULE = (
    "keys are 1-63 characters of a-z, 0-9, '_', '.' and '-', starting with a letter or digit "
    "(upper case is read as lower case)"
)
# Where a usage report puts what carries no value for the grouped key.
UNTAGGED = "untagged"


def _describe(key: Any) -> str:
    text = str(key)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def normalize_key(key: Any, *, field: str = "tags") -> str:
    """The key as stored (lower case), or a 400 naming `field` and the key."""
    # ASCII first: str.lower() maps some other letters to ASCII ones (the Kelvin sign to "k").
    if not isinstance(key, str) or not key.isascii() or not KEY_RE.match(key.lower()):
        raise invalid(field, f"Tag {_describe(key)}: {KEY_RULE}.")
    key = key.lower()
    if key == RESERVED or key.startswith(tuple(RESERVED + s for s in RESERVED_SEPARATORS)):
        raise invalid(
            field, f"Tag {_describe(key)}: keys starting with '{RESERVED}' are reserved for the platform."
        )
    return key


def check_value(key: str, value: Any, *, field: str = "tags") -> str:
    if not isinstance(value, str):
        raise invalid(field, f"Tag {_describe(key)}: the value must be a string.")
    if len(value) > MAX_VALUE:
        raise invalid(field, f"Tag {_describe(key)}: the value is at most {MAX_VALUE} characters.")
    # Control characters (NUL included, which PostgreSQL's jsonb refuses) would corrupt tables and CSVs.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise invalid(field, f"Tag {_describe(key)}: the value must not contain control characters.")
    return value


def _keys(items: Iterable[Any], field: str) -> dict[Any, str]:
    """Each key given, normalized; two that are one key in lower case are refused."""
    seen: dict[str, Any] = {}
    normalized = {}
    for key in items:
        lower = normalize_key(key, field=field)
        if lower in seen:
            raise invalid(
                field,
                f"Tags {_describe(seen[lower])} and {_describe(key)} are the same key (keys ignore case).",
            )
        seen[lower] = key
        normalized[key] = lower
    return normalized


def _too_many(count: int, field: str) -> None:
    if count > MAX_TAGS:
        raise invalid(field, f"At most {MAX_TAGS} tags per resource ({count} given).")


def check_tags(tags: Any, *, field: str = "tags") -> dict[str, str]:
    """A whole set of tags (at creation): an object of key: string value."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise invalid(field, 'Must be an object of key: value strings, e.g. {"team": "ml"}.')
    _too_many(len(tags), field)
    keys = _keys(tags, field)
    return {keys[key]: check_value(keys[key], value, field=field) for key, value in tags.items()}


def check_changes(changes: Any, *, field: str = "tags") -> dict[str, str | None]:
    """A merge patch of tags: key: string sets it, key: null removes it."""
    if not isinstance(changes, dict):
        raise invalid(field, "Must be an object of key: value (a string sets it, null removes it).")
    if len(changes) > 2 * MAX_TAGS:
        raise invalid(field, f"At most {2 * MAX_TAGS} changes at once.")
    keys = _keys(changes, field)
    return {
        keys[key]: None if value is None else check_value(keys[key], value, field=field)
        for key, value in changes.items()
    }


def merged(
    current: Mapping[str, str], changes: Mapping[str, str | None], *, field: str = "tags"
) -> dict[str, str]:
    """The tags after a (checked) merge patch, refused when they would be more than MAX_TAGS."""
    result = dict(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    _too_many(len(result), field)
    return dict(sorted(result.items()))


def replacement(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str | None]:
    """The merge patch that turns `current` into `wanted` (a form that edits the whole set)."""
    patch: dict[str, str | None] = {key: None for key in current if key not in wanted}
    patch.update({key: value for key, value in wanted.items() if current.get(key) != value})
    return patch


def parse_lines(text: str, *, field: str = "tags") -> dict[str, str]:
    """The console's tags box: one `key=value` a line (blank lines skipped), checked like the API's."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise invalid(field, f"Line {number} ({_describe(line.strip())}): write key=value.")
        key = key.strip()
        if key in pairs:
            raise invalid(field, f"Tag {_describe(key)} is given twice.")
        pairs[key] = value.strip()
    return check_tags(pairs, field=field)


def as_lines(tags: Mapping[str, str]) -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(tags.items()))


def parse_filters(texts: Iterable[str], *, field: str = "tag") -> dict[str, str]:
    """Repeated `tag=<key>:<value>` query parameters (all must hold): {key: value}. The key is read as a tag
    key (lower case); the value is everything after the first ':' (it may be empty)."""
    wanted: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition(":")
        if not sep:
            raise invalid(field, f"{_describe(text)}: write <key>:<value>, e.g. team:ml.")
        key = normalize_key(key, field=field)
        check_value(key, value, field=field)
        if key in wanted and wanted[key] != value:
            raise invalid(field, f"Tag {_describe(key)} is asked for with two values; no usage has both.")
        wanted[key] = value
    return wanted


# --- the API's fields ----------------------------------------------------------------------------------

TAGS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "string", "maxLength": MAX_VALUE},
    "maxProperties": MAX_TAGS,
    "description": 'Key/value labels (docs/billing.md "Tags"): keys 1-63 of a-z, 0-9, _ . - starting '
    "alphanumeric, case-insensitive (stored lower case), not starting with gpucloud; values 0-255 "
    f"characters; at most {MAX_TAGS}.",
    "example": {"team": "ml", "project": "llm"},
}
TAG_CHANGES_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "string", "maxLength": MAX_VALUE, "nullable": True},
    "description": "A merge patch of the tags: a key with a string sets it, a key with null removes it, "
    "keys not named are kept.",
    "example": {"team": "research", "old-project": None},
}


@extend_schema_field(TAGS_SCHEMA)
class TagsField(serializers.JSONField):
    """The JSON as sent: the service checks it with check_tags (one place for the rules). Shown sorted by
    key."""

    def to_representation(self, value: Any) -> Any:
        return dict(sorted((value or {}).items()))


@extend_schema_field(TAG_CHANGES_SCHEMA)
class TagChangesField(serializers.JSONField):
    """The JSON as sent: the service checks it with check_changes."""
