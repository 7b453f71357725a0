"""The tag rules (apps/core/tags.py): every refusal is a 400 naming the field and the tag."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core import tags
from apps.core.errors import InvalidInput


def refusal(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    (field, messages), *_ = caught.value.fields.items()
    return field, messages[0]


def test_a_valid_set_is_kept_with_its_keys_in_lower_case_and_values_as_given() -> None:
    assert tags.check_tags({"Team": "ML", "cost-center.eu_1": "", "9x": "a b:c=d ü"}) == {
        "team": "ML",
        "cost-center.eu_1": "",
        "9x": "a b:c=d ü",
    }
    assert tags.check_tags(None) == {}


@pytest.mark.parametrize(
    "key",
    ["", "-team", "_x", ".x", "team name", "team:ml", "a" * 64, "équipe", "\u212aelvin", "a/b", "t\x00"],
)
def test_a_bad_key_is_refused_naming_the_field_and_the_tag(key: str) -> None:
    field, message = refusal(tags.check_tags, {key: "v"})
    assert field == "tags"
    assert message.startswith(f"Tag {key!r}: ")
    assert "keys are 1-63 characters" in message


def test_the_longest_key_and_value_are_accepted_and_one_more_is_not() -> None:
    assert tags.check_tags({"a" * 63: "v" * 255}) == {"a" * 63: "v" * 255}
    field, message = refusal(tags.check_tags, {"team": "v" * 256})
    assert (field, message) == ("tags", "Tag 'team': the value is at most 255 characters.")


@pytest.mark.parametrize("key", ["gpucloud", "gpucloud.region", "GPUCLOUD-x", "gpucloud_y"])
def test_the_platform_prefix_is_reserved(key: str) -> None:
    assert "reserved for the platform" in refusal(tags.check_tags, {key: "v"})[1]


def test_a_key_merely_starting_with_the_word_is_not_reserved() -> None:
    assert tags.check_tags({"gpuclouds": "v"}) == {"gpuclouds": "v"}


@pytest.mark.parametrize("value", [1, None, ["a"], {"a": "b"}, True])
def test_a_value_that_is_not_a_string_is_refused(value: Any) -> None:
    assert refusal(tags.check_tags, {"team": value}) == ("tags", "Tag 'team': the value must be a string.")


@pytest.mark.parametrize("value", ["a\x00b", "line\nbreak", "tab\t", "\x7f", "\x85"])
def test_control_characters_in_a_value_are_refused(value: str) -> None:
    assert "control characters" in refusal(tags.check_tags, {"team": value})[1]


def test_keys_that_differ_only_in_case_are_one_key() -> None:
    field, message = refusal(tags.check_tags, {"team": "a", "TEAM": "b"})
    assert field == "tags" and "'team' and 'TEAM' are the same key" in message


def test_at_most_fifty_tags() -> None:
    fifty = {f"k{i}": "v" for i in range(50)}
    assert len(tags.check_tags(fifty)) == 50
    assert refusal(tags.check_tags, {**fifty, "k50": "v"}) == (
        "tags",
        "At most 50 tags per resource (51 given).",
    )


def test_not_an_object_is_refused() -> None:
    assert refusal(tags.check_tags, ["team=ml"])[0] == "tags"
    assert refusal(tags.check_changes, "team=ml")[0] == "tags"


def test_a_merge_patch_sets_removes_and_keeps() -> None:
    patch = tags.check_changes({"Team": "research", "old": None, "new": ""})
    assert patch == {"team": "research", "old": None, "new": ""}
    assert tags.merged({"team": "ml", "old": "x", "kept": "y"}, patch) == {
        "kept": "y",
        "new": "",
        "team": "research",
    }
    # Removing a key that is not there changes nothing.
    assert tags.merged({"a": "1"}, {"b": None}) == {"a": "1"}


def test_a_merge_past_fifty_tags_is_refused_but_one_that_removes_some_is_not() -> None:
    current = {f"k{i}": "v" for i in range(50)}
    assert "At most 50 tags" in refusal(tags.merged, current, {"extra": "v"})[1]
    assert len(tags.merged(current, {"extra": "v", "k0": None})) == 50


def test_a_replacement_is_the_patch_from_one_set_to_another() -> None:
    current = {"team": "ml", "old": "x", "same": "s"}
    wanted = {"team": "research", "same": "s", "new": "n"}
    patch = tags.replacement(current, wanted)
    assert patch == {"old": None, "team": "research", "new": "n"}
    assert tags.merged(current, patch) == wanted


def test_the_console_box_reads_one_key_value_a_line() -> None:
    assert tags.parse_lines("team = ml\n\n  Project=llm=v2 \n") == {"team": "ml", "project": "llm=v2"}
    assert tags.parse_lines("") == {}
    assert refusal(tags.parse_lines, "team ml") == ("tags", "Line 1 ('team ml'): write key=value.")
    assert "given twice" in refusal(tags.parse_lines, "a=1\na=2")[1]
    assert tags.as_lines({"b": "2", "a": "1"}) == "a=1\nb=2"


def test_usage_filters_read_key_colon_value() -> None:
    assert tags.parse_filters(["Team:ml", "env:prod:eu", "blank:"]) == {
        "team": "ml",
        "env": "prod:eu",
        "blank": "",
    }
    assert tags.parse_filters(["team:ml", "team:ml"]) == {"team": "ml"}
    assert refusal(tags.parse_filters, ["team"]) == ("tag", "'team': write <key>:<value>, e.g. team:ml.")
    assert refusal(tags.parse_filters, ["bad key:x"])[0] == "tag"
    assert "two values" in refusal(tags.parse_filters, ["team:ml", "team:research"])[1]


def test_a_refusal_names_the_field_it_is_given() -> None:
    assert refusal(tags.normalize_key, "Bad Key", field="group_by")[0] == "group_by"
