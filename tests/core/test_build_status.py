"""The bring-up status file (apps/core/build_status.py): what the console, a waiting launch and object storage
read while `make run` builds behind the console. A reader never fails on a missing or broken file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apps.core import build_status as bs

NOW = 1_000_000.0


def status_data(pieces: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": bs.SCHEMA,
        "pid": os.getpid(),  # alive: this test process
        "started": NOW - 300,
        "finished": None,
        "regions": ["us-east-1", "eu-west-1"],
        "expected_total": 800.0,
        "expected_by": {"regions": 500.0, "s3": 800.0},
        "expected_source": "the last measured time of each piece",
        "log": "/repo/var/log/bring-up",
        "pieces": pieces,
    }
    data.update(extra)
    return data


def piece(name: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "label": name, "state": state, **extra}


BUILDING = [
    piece("kubernetes", "running", started=NOW - 300, expected=346.0),
    piece("etcd", "done", started=NOW - 300, finished=NOW - 200),
    piece("weed", "cached"),
    piece("sandbox", "waiting"),
    piece("regions", "waiting"),
    piece("s3", "waiting"),
]


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_building_status_names_the_region_wait_and_the_time_left(tmp_path: Path) -> None:
    status = bs.read(write(tmp_path / "s.json", status_data(BUILDING)))
    assert status is not None
    assert status.state() == "building"
    assert status.left(NOW, "regions") == 200.0
    assert status.region_note("us-east-1", NOW) == (
        "Waiting for region us-east-1's cluster to come up "
        "(the local sandbox is building, about 3 min 20 s left)."
    )
    # A region this bring-up does not connect gets no note (the caller says "no cluster connection").
    assert status.region_note("ap-south-1", NOW) == ""
    assert status.object_storage_note(NOW) == (
        "Object storage is not ready yet: its local server is still being built, about 8 min 20 s left."
    )


def test_past_the_measure_it_says_so_instead_of_a_negative_time(tmp_path: Path) -> None:
    status = bs.read(write(tmp_path / "s.json", status_data(BUILDING, started=NOW - 900)))
    assert status is not None
    assert status.left(NOW) == 0.0
    assert "taking longer than the last measured build" in status.region_note("us-east-1", NOW)


def test_once_the_regions_are_connected_nothing_waits_for_them(tmp_path: Path) -> None:
    pieces = [*BUILDING[:3], piece("sandbox", "done"), piece("regions", "done"), piece("s3", "running")]
    status = bs.read(write(tmp_path / "s.json", status_data(pieces)))
    assert status is not None
    assert status.region_note("us-east-1", NOW) == ""
    assert status.object_storage_note(NOW).startswith("Object storage is not ready yet")


def test_done_when_every_piece_is_done_or_cached(tmp_path: Path) -> None:
    pieces = [piece(p["name"], "done") for p in BUILDING]
    status = bs.read(write(tmp_path / "s.json", status_data(pieces, finished=NOW)))
    assert status is not None
    assert status.state() == "done"
    assert status.region_note("us-east-1") == status.object_storage_note() == ""


def test_a_failed_piece_fails_the_bring_up_and_stops_the_estimates(tmp_path: Path) -> None:
    pieces = [piece("kubernetes", "failed", error="exited with status 1"), *BUILDING[1:]]
    status = bs.read(write(tmp_path / "s.json", status_data(pieces, finished=NOW)))
    assert status is not None
    assert status.state() == "failed"
    assert status.region_note("us-east-1", NOW) == ""  # nothing is on its way: the plain message applies


def test_a_status_whose_process_is_gone_is_interrupted(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    status = bs.read(write(tmp_path / "s.json", status_data(BUILDING, pid=dead.pid)))
    assert status is not None
    assert status.state() == "interrupted"
    assert status.region_note("us-east-1", NOW) == ""


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        "[]",
        json.dumps({"schema": 999, "started": 1}),
        json.dumps({"schema": bs.SCHEMA}),
        json.dumps({"schema": bs.SCHEMA, "started": 1, "pieces": ["x"]}),
    ],
)
def test_a_broken_file_reads_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    assert bs.read(path) is None


def test_a_missing_file_or_no_setting_reads_as_none(tmp_path: Path, settings: Any) -> None:
    assert bs.read(tmp_path / "missing.json") is None
    settings.BUILD_STATUS_FILE = None
    assert bs.current() is None
    assert bs.region_note("us-east-1") == bs.object_storage_note() == ""


def test_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "var" / "s.json"
    bs.write(path, {k: v for k, v in status_data(BUILDING).items() if k != "schema"})
    status = bs.read(path)
    assert status is not None and status.pieces[0].name == "kubernetes"
    assert [p.name for p in path.parent.iterdir()] == ["s.json"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (45.4, "45 s"), (60, "1 min"), (185, "3 min 5 s"), (599, "9 min 59 s"), (690, "12 min")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert bs.human_duration(seconds) == text
