"""apps/core/strict_json.py: JSON decoding within limits, each limit at its edge, problems named by path."""

from __future__ import annotations

import json
import sys
import time

import pytest

from apps.core.strict_json import INT64_MAX, INT64_MIN, JsonLimits, JsonRefused, loads

LIMITS = JsonLimits(
    max_depth=4,
    max_keys_per_object=3,
    max_items_per_array=5,
    max_entries=12,
    max_string_length=10,
    max_number_length=20,
)


def refused(raw: bytes | str, limits: JsonLimits = LIMITS) -> JsonRefused:
    with pytest.raises(JsonRefused) as caught:
        loads(raw.encode() if isinstance(raw, str) else raw, limits)
    return caught.value


def test_ordinary_json_within_the_limits_decodes_as_json_loads_does() -> None:
    raw = '{"name": "gpu", "n": [1, -2.5, true, null], "env": {"A": "é \\"x\\" ]}"}}'
    assert loads(raw.encode(), LIMITS) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "deeper"),
    [
        ("[[[[1]]]]", False),
        ("[[[[[1]]]]]", True),
        ('{"a": {"b": {"c": {"d": 1}}}}', False),
        ('{"a": {"b": {"c": {"d": {"e": 1}}}}}', True),
        ('["[[[[[[[[", "]]]]]]]]"]', False),  # brackets in strings do not count
        ('[[[["\\"[[[[[["]]]]', False),  # nor after an escaped quote
        ("[]" * 50, False),  # wide is not deep (and not JSON: the decoder says so)
        ("[[[[" * 10, True),  # unclosed
    ],
)
def test_nesting_depth(raw: str, deeper: bool) -> None:
    try:
        loads(raw.encode(), LIMITS)
        too_deep = False
    except JsonRefused as exc:
        too_deep = "levels deep" in exc.message
    except json.JSONDecodeError:
        too_deep = False
    assert too_deep is deeper


def test_too_deep_is_refused_before_the_decoder_recurses() -> None:
    for raw in (b"[" * 1_000_000, b"[" * 500_000 + b"]" * 500_000, b'{"a":' * 200_000):
        started = time.perf_counter()
        error = refused(raw, LIMITS)
        assert error.message == "arrays and objects nest more than 4 levels deep."
        assert time.perf_counter() - started < 2  # milliseconds in fact; no recursion, no quadratic pass
    assert sys.getrecursionlimit() < 5000  # the point: json.loads would have died on these


@pytest.mark.parametrize("max_depth", [0, 1, 2, 3, 4, 5, 6])
def test_every_depth_limit_is_exact(max_depth: int) -> None:
    limits = JsonLimits(max_depth, 10, 10, 100, 10, 10)
    for depth in range(8):
        raw = ("[" * depth + "1" + "]" * depth).encode()
        if depth <= max_depth:
            assert loads(raw, limits) is not None
        else:
            assert "levels deep" in refused(raw, limits).message


def test_wide_shallow_bodies_are_not_mistaken_for_deep_ones() -> None:
    limits = JsonLimits(32, 1000, 1000, 100_000, 100, 40)
    wide = "[" + ",".join(["[[[[[[[[[[1]]]]]]]]]]"] * 500) + "]"  # depth 11, 500 times
    assert len(loads(wide.encode(), limits)) == 500


@pytest.mark.parametrize(
    ("raw", "path", "says"),
    [
        ('{"n": ' + "9" * 21 + "}", "n", "a number of 21 characters"),
        ('{"n": ' + "9" * 5000 + "}", "n", "a number of 5000 characters"),
        ('{"n": 1.' + "0" * 19 + "}", "n", "a number of 21 characters"),
        (f'{{"n": [{INT64_MAX + 1}]}}', "n.0", "64-bit range"),
        (f'{{"n": {INT64_MIN - 1}}}', "n", "64-bit range"),
        ('{"n": NaN}', "n", "NaN is not a JSON number"),
        ('{"n": Infinity}', "n", "Infinity is not a JSON number"),
        ('{"n": -Infinity}', "n", "-Infinity is not a JSON number"),
        ('{"n": 1e999}', "n", "1e999 is too large"),
        ('{"n": -1E+400}', "n", "-1E+400 is too large"),
    ],
)
def test_numbers(raw: str, path: str, says: str) -> None:
    error = refused(raw)
    assert (error.path, says in error.message) == (path, True), error


def test_numbers_at_the_edges_are_accepted() -> None:
    assert loads(f"[{INT64_MAX}, {INT64_MIN}, 1e308, 1e-999]".encode(), LIMITS) == [
        INT64_MAX,
        INT64_MIN,
        1e308,
        0.0,
    ]


def test_duplicate_keys_name_the_key_wherever_it_is() -> None:
    assert refused('{"a": 1, "a": 2}').path == "a"
    error = refused('{"env": [{"X": 1, "Y": 2, "X": 3}]}')
    assert (error.path, error.message) == ("env.0.X", 'the key "X" appears more than once.')


def test_counts_per_object_per_array_and_in_all() -> None:
    assert loads(b'{"a": 1, "b": 2, "c": 3}', LIMITS)
    assert refused('{"x": {"a": 1, "b": 2, "c": 3, "d": 4}}').message.startswith("an object with 4 keys")
    assert loads(b"[1, 2, 3, 4, 5]", LIMITS)
    assert refused('{"x": [1, 2, 3, 4, 5, 6]}').path == "x"
    # 12 entries (3 keys, 5 + 2 + 2 items) pass; 15 in small containers are refused by the walk
    in_all = '{"a": [1, 2, 3, 4, 5], "b": [1, 2], "c": [3, 4]}'
    assert loads(in_all.encode(), LIMITS)
    assert "in all" in refused('{"a": [1, 2, 3, 4, 5], "b": [1, 2], "c": [[3], [4, 5]]}').message
    # 12 commas outside strings mean 13 entries at least: refused before decoding
    assert "in all" in refused("[" + ",".join(["[]"] * 13) + "]").message


def test_strings_and_keys() -> None:
    assert loads(b'{"k": "0123456789"}', LIMITS)
    error = refused('{"k": ["01234567890"]}')
    assert (error.path, error.message) == ("k.0", "a string of 11 characters; at most 10 are allowed.")
    assert "11 characters" in refused('{"01234567890": 1}').message
    assert "NUL" in refused('{"k": "a\\u0000"}').message
    assert "NUL" in refused('{"a\\u0000": 1}').message
    assert "surrogates" in refused('{"k": "\\udc00"}').message
    assert loads(b'{"k": "\\ud83d\\ude00"}', LIMITS) == {"k": "\U0001f600"}  # a pair is fine


@pytest.mark.parametrize(
    "raw", [b"\xff", b'{"k": "\xc3"}', b'{"k": "\xed\xa0\x80"}', '"é"'.encode("latin-1")]
)
def test_invalid_utf8_is_refused_with_the_byte(raw: bytes) -> None:
    assert "not valid UTF-8" in refused(raw).message


def test_malformed_json_is_a_decode_error_not_a_refusal() -> None:
    for raw in (b'{"a": 1,', b"[1, 2", b"", b"nul"):
        with pytest.raises(json.JSONDecodeError):
            loads(raw, LIMITS)
