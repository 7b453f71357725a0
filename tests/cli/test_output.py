"""Formatting for people and for scripts, and the exit code of each kind of error (no server needed)."""

from __future__ import annotations

import io

import pytest

from gpucloud_cli import output
from gpucloud_cli.client import ApiError, InstanceEnded, TransportError, WaitTimeout
from gpucloud_cli.commands import NotLoggedIn, NotReady
from gpucloud_cli.main import exit_code, main


def test_a_table_aligns_columns_to_their_widest_cell() -> None:
    rows = [
        {"id": "a1", "name": "train", "gpus": 8, "tags": ["x", "y"], "ok": True},
        {"id": "b22222", "name": "t", "gpus": None, "tags": [], "ok": False},
    ]
    text = output.table(rows, [("ID", "id"), ("NAME", "name"), ("GPUS", "gpus"), ("TAGS", "tags"),
                               ("OK", lambda r: r["ok"])])  # fmt: skip
    assert text.splitlines() == [
        "ID      NAME   GPUS  TAGS  OK",
        "a1      train  8     x,y   yes",
        "b22222  t      -     -     no",
    ]


def test_cells_stay_on_one_line() -> None:
    assert output.cell("two\nlines  here") == "two lines here"
    assert output.cell({}) == "-"
    assert output.cell({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


def test_details_align_keys() -> None:
    assert output.details([("id", "x"), ("long key", None)]).splitlines() == ["id:        x", "long key:  -"]


def test_json_output_is_parseable_and_keeps_order() -> None:
    assert output.to_json({"b": 1, "a": [1, 2]}) == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}'


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 2H ", 7200)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert output.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "10x", "1h5", "-5m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        output.parse_duration(text)


def test_durations_print_for_people() -> None:
    assert [output.duration(s) for s in (None, 0, 59, 60, 3725, 90000)] == [
        "-",
        "0s",
        "59s",
        "1m",
        "1h 2m",
        "1d 1h",
    ]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_spinner_writes_only_to_a_terminal() -> None:
    pipe = io.StringIO()
    with output.Spinner(pipe, interval=0.001) as spinner:
        spinner.update("pending")
    assert pipe.getvalue() == ""

    terminal = FakeTerminal()
    spinner = output.Spinner(terminal, interval=0.001)
    spinner.update("pending")
    with spinner:
        while "pending" not in terminal.getvalue():
            spinner._stop.wait(0.001)
    assert "\r\033[K" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\033[K")  # the line is cleared when done


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ApiError(401, "not_authenticated", "m"), 3),
        (ApiError(403, "missing_scope", "m"), 3),
        (ApiError(403, "tenant_suspended", "m"), 3),
        (ApiError(404, "not_found", "m"), 4),
        (ApiError(409, "quota_exceeded", "m"), 5),
        (ApiError(409, "no_capacity", "m"), 6),
        (ApiError(402, "insufficient_funds", "m"), 7),
        (ApiError(409, "invalid_state", "m"), 8),
        (ApiError(409, "region_unavailable", "m"), 8),
        (ApiError(400, "invalid", "m"), 1),
        (ApiError(500, "server_error", "m"), 1),
        (TransportError("m"), 1),
        (WaitTimeout("m"), 9),
        (InstanceEnded("m", {}), 1),
        (NotLoggedIn("m"), 3),
        (NotReady("m"), 8),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: gpucloud" in capsys.readouterr().err


def test_an_api_error_without_the_error_body_is_still_reported() -> None:
    error = ApiError.from_response(502, b"<html>Bad gateway</html>", {})
    assert (error.status, error.code, error.message) == (502, "http_502", "HTTP 502")
    error = ApiError.from_response(
        400, b'{"error": {"code": "invalid", "message": "x", "fields": {"a": ["b"]}}}', {}
    )
    assert (error.code, error.message, error.fields) == ("invalid", "x", {"a": ["b"]})
