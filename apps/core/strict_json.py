"""JSON decoding with limits, for request bodies: what a client sends is parsed only within bounds.

Python's json module alone is a poor guard for untrusted input. Its C decoder recurses once per nesting
level, so a few thousand `[` end in RecursionError (a 500); it accepts NaN and Infinity, reads `1e999` as
infinity, keeps the last of duplicate keys without a word, and converts integer literals of any length
(thousands of digits cost quadratic CPU, and past 4300 it raises ValueError). `loads()` below refuses all of
that with `JsonRefused`, naming the problem and, where one exists, the path of the value (`volumes.0.name`):

1. the bytes must be UTF-8 (RFC 8259 section 8.1), decoded strictly;
2. the nesting depth and the number of entries are checked first, over the text outside strings and
   without recursion;
3. the decoder then runs with hooks that mark (not raise on) duplicate keys, NaN/Infinity and out-of-range
   numbers, so that
4. one walk over the result can report each problem with its path, together with the counts (keys per
   object, items per array, entries in all) and the strings (length, U+0000, unpaired surrogates).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # PostgreSQL's bigint: no column of ours holds more


@dataclass(frozen=True)
class JsonLimits:
    max_depth: int
    max_keys_per_object: int
    max_items_per_array: int
    max_entries: int  # object keys and array items in the whole document
    max_string_length: int  # characters, for keys and values
    max_number_length: int  # characters of a number literal


class JsonRefused(ValueError):
    """A body outside the limits, or not JSON a program should accept. `path` is "" for the body itself."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


# A JSON string literal, escapes included (the unrolled form: no backtracking on long strings).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Brackets as parentheses; every other ASCII character deleted. (Non-ASCII characters are not JSON outside
# strings: they stay, count as 0, and the decoder refuses them.)
_ONLY_BRACKETS = {code: None for code in range(128)} | {
    ord("["): "(",
    ord("{"): "(",
    ord("]"): ")",
    ord("}"): ")",
}
_STEP = {"(": 1, ")": -1}
_PRE_PASSES = 4
_CHUNK = 4096


def _nesting_too_deep(outside_strings: str, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than `max_depth` in JSON text whose strings were removed.

    Without recursion, and in C-level loops: after deleting everything but brackets, a few
    passes delete the innermost "()" pairs (one level of every structure each, so a wide and shallow body
    melts away), then a running sum over what is left, chunk by chunk, stops at the first opening bracket
    too deep (so a megabyte of `[` costs a few milliseconds). Each pass lowers the depth by at most one,
    so the passes are added back."""
    brackets = outside_strings.translate(_ONLY_BRACKETS)
    passes = 0
    while passes < _PRE_PASSES and "()" in brackets:
        brackets = brackets.replace("()", "")
        passes += 1
    if passes > max_depth:  # the passes emptied a structure deeper than allowed
        return True
    budget, depth = max_depth - passes, 0
    for start in range(0, len(brackets), _CHUNK):
        sums = list(accumulate(map(_STEP.get, brackets[start : start + _CHUNK], repeat(0)), initial=depth))
        if max(sums) > budget:
            return True
        depth = sums[-1]
    return False


class _Refusal:
    """What a decoder hook found wrong, left in place of the value so the walk can name its path."""

    __slots__ = ("key", "message")

    def __init__(self, message: str, key: str | None = None):
        self.message = message
        self.key = key  # the offending key of an object: the path names it


def _decoder(limits: JsonLimits) -> json.JSONDecoder:
    def number(literal: str, convert: type[int] | type[float]) -> Any:
        if len(literal) > limits.max_number_length:
            return _Refusal(
                f"a number of {len(literal)} characters; at most {limits.max_number_length} are allowed."
            )
        value = convert(literal)
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            return _Refusal(f"an integer outside the 64-bit range ({INT64_MIN} to {INT64_MAX}).")
        if isinstance(value, float) and not math.isfinite(value):
            return _Refusal(f"{literal} is too large for a number.")
        return value

    def constant(name: str) -> _Refusal:
        return _Refusal(f"{name} is not a JSON number.")

    def pairs(items: list[tuple[str, Any]]) -> Any:
        result = dict(items)
        if len(result) == len(items):
            return result
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                return _Refusal(f'the key "{_shown(key)}" appears more than once.', key)
            seen.add(key)
        return result  # unreachable: a shorter dict means a repeated key

    return json.JSONDecoder(
        object_pairs_hook=pairs,
        parse_int=lambda literal: number(literal, int),
        parse_float=lambda literal: number(literal, float),
        parse_constant=constant,
    )


def _shown(text: str, limit: int = 40) -> str:
    """A key quoted in a message: short and printable."""
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def _join(path: str, part: str | int) -> str:
    return f"{path}.{part}" if path else str(part)


def _entries(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every value of the document with its path, containers before their contents (depth is bounded
    by then, so the recursion is too)."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _entries(item, _join(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _entries(item, _join(path, index))


def _string_problem(text: str, limits: JsonLimits) -> str | None:
    if len(text) > limits.max_string_length:
        return f"a string of {len(text)} characters; at most {limits.max_string_length} are allowed."
    if "\x00" in text:
        return "strings must not contain the NUL character (U+0000)."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must not contain unpaired surrogates (\\ud800 to \\udfff)."
    return None


def _check(document: Any, limits: JsonLimits) -> None:
    entries = 0
    for path, value in _entries(document, ""):
        if isinstance(value, _Refusal):
            raise JsonRefused(value.message, path if value.key is None else _join(path, value.key))
        if isinstance(value, str):
            problem = _string_problem(value, limits)
            if problem:
                raise JsonRefused(problem, path)
        elif isinstance(value, dict):
            if len(value) > limits.max_keys_per_object:
                raise JsonRefused(
                    f"an object with {len(value)} keys; at most {limits.max_keys_per_object} are allowed.",
                    path,
                )
            for key in value:
                problem = _string_problem(key, limits)
                if problem:
                    raise JsonRefused(f'key "{_shown(key)}": {problem}', path)
            entries += len(value)
        elif isinstance(value, list):
            if len(value) > limits.max_items_per_array:
                raise JsonRefused(
                    f"an array with {len(value)} items; at most {limits.max_items_per_array} are allowed.",
                    path,
                )
            entries += len(value)
        if entries > limits.max_entries:
            raise _too_many_entries(limits)


def _too_many_entries(limits: JsonLimits) -> JsonRefused:
    return JsonRefused(f"the body holds more than {limits.max_entries} keys and array items in all.")


def _prescan(text: str, limits: JsonLimits) -> None:
    """What can be refused before decoding, cheaply: the depth (the decoder recurses), and the entries
    (decoding a megabyte of `[[],[],...` takes far longer than refusing it): n commas outside strings
    separate at least n + 1 keys or items."""
    outside = _STRING.sub("", text)
    if outside.count(",") >= limits.max_entries:
        raise _too_many_entries(limits)
    if _nesting_too_deep(outside, limits.max_depth):
        raise JsonRefused(f"arrays and objects nest more than {limits.max_depth} levels deep.")


def loads(raw: bytes, limits: JsonLimits) -> Any:
    """The document in `raw`, or JsonRefused. Malformed JSON raises json.JSONDecodeError as json.loads
    does (the caller tells syntax errors apart from refusals)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"the body is not valid UTF-8 (byte {exc.start}).") from None
    _prescan(text, limits)
    document = _decoder(limits).decode(text)
    _check(document, limits)
    return document
