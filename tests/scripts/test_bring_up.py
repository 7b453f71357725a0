"""scripts/bring_up.py, `make run`'s background bring-up, with stand-in commands for the Go builds (the real
ones take minutes; `make first-run-check` runs them, docs/sandbox.md "First run"): the order and the limit on
concurrent builds, failures and what depends on them, the status file, the expected times, the lines held
until the banner, and a stop that ends the builds in progress."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from apps.core import build_status as bs

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bring_up.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bring_up", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bring_up"] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


bring_up = _load()


def sh(command: str) -> list[str]:
    return ["bash", "-c", command]


def make(tmp_path: Path, steps: list[Any], *, jobs: int = 2, announce_after: Path | None = None) -> Any:
    return bring_up.BringUp(
        steps=steps,
        regions=["us-east-1"],
        status_file=tmp_path / "build-status.json",
        log_dir=tmp_path / "logs",
        jobs=jobs,
        announce_after=announce_after,
        milestones={"regions": 10.0},
        expected_total=10.0,
        expected_source="test",
    )


def test_builds_run_at_most_jobs_at_once_and_a_step_waits_for_its_builds(tmp_path: Path) -> None:
    steps = [
        bring_up.Step("kubernetes", "k", sh("sleep 0.6"), build=True),
        bring_up.Step("etcd", "e", sh("sleep 0.6"), build=True),
        bring_up.Step("weed", "w", sh("sleep 0.6"), build=True),
        bring_up.Step("sandbox", "s", sh("true"), after=("kubernetes", "etcd")),
    ]
    run = make(tmp_path, steps, jobs=2)

    assert run.run() == 0

    k, e, w, s = steps
    assert all(step.state == bs.DONE for step in steps)
    assert k.started is not None and e.started is not None and abs(k.started - e.started) < 0.4  # together
    assert w.started is not None and w.started >= min(k.finished, e.finished) - 0.01  # a third waits
    assert s.started is not None and s.started >= max(k.finished, e.finished) - 0.01
    status = bs.read(tmp_path / "build-status.json")
    assert status is not None and status.state() == "done" and status.finished is not None
    assert [p.state for p in status.pieces] == ["done"] * 4


def test_a_cached_piece_is_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "bin" / ".complete"
    marker.parent.mkdir()
    marker.touch()
    ran = tmp_path / "ran"
    step = bring_up.Step("etcd", "e", sh(f"touch {ran}"), build=True, marker=marker, state=bs.CACHED)
    assert make(tmp_path, [step]).run() == 0
    assert step.state == bs.CACHED and not ran.exists()


def test_a_failure_fails_what_needs_it_and_the_rest_goes_on(tmp_path: Path) -> None:
    steps = [
        bring_up.Step("kubernetes", "Kubernetes", sh("echo compiling; echo boom >&2; exit 3"), build=True),
        bring_up.Step("weed", "SeaweedFS", sh("true"), build=True),
        bring_up.Step("sandbox", "s", sh("true"), after=("kubernetes",)),
        bring_up.Step("regions", "r", sh("true"), after=("sandbox",)),
        bring_up.Step("s3", "o", sh("true"), after=("weed",)),
    ]
    assert make(tmp_path, steps).run() == 1

    by = {s.name: s for s in steps}
    assert by["kubernetes"].state == bs.FAILED and by["kubernetes"].error == "exited with status 3"
    assert (by["sandbox"].state, by["sandbox"].error) == (bs.FAILED, "needs kubernetes, which failed")
    assert (by["regions"].state, by["regions"].error) == (bs.FAILED, "needs sandbox, which failed")
    assert by["sandbox"].started is None  # never ran
    assert by["weed"].state == by["s3"].state == bs.DONE
    assert "boom" in (tmp_path / "logs" / "kubernetes.log").read_text()
    status = bs.read(tmp_path / "build-status.json")
    assert status is not None and status.state() == "failed"


def test_a_step_whose_check_refuses_its_output_fails(tmp_path: Path) -> None:
    check = bring_up._connected_check(["us-east-1", "eu-west-1"])
    step = bring_up.Step(
        "regions", "r", sh("echo 'catalog seeded'; echo 'connected to clusters: us-east-1'"), check=check
    )
    assert make(tmp_path, [step]).run() == 1
    assert step.state == bs.FAILED
    assert step.error == "not connected: eu-west-1 (connected to clusters: us-east-1)"
    assert check("connected to clusters: us-east-1, eu-west-1") == ""


def test_lines_for_the_terminal_wait_for_the_banner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "web-answered"
    step = bring_up.Step("regions", "r", sh("echo 'connected to clusters: us-east-1'"))
    step.check = bring_up._connected_check(["us-east-1"])
    run = make(tmp_path, [step], announce_after=marker)
    thread = threading.Thread(target=run.run)
    thread.start()
    deadline = time.monotonic() + 10
    while step.state != bs.DONE and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.6)
    assert step.state == bs.DONE
    assert "connected" not in capsys.readouterr().out  # held: no banner yet
    marker.touch()
    thread.join(10)
    assert not thread.is_alive()
    out = capsys.readouterr().out
    assert out.startswith("regions us-east-1 connected to the sandbox's clusters ")
    assert out.rstrip().endswith("after start: launches run now")


def test_a_stop_ends_the_builds_in_progress(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The build's child (as `go build` is under build.sh) must end too: the whole process group is stopped.
    step = bring_up.Step("kubernetes", "k", sh(f"sleep 60 & echo $! > {pid_file}; wait"), build=True)
    run = make(tmp_path, [step])
    thread = threading.Thread(target=run.run)
    thread.start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    run.stop()
    thread.join(20)

    assert not thread.is_alive()
    assert not bs.pid_alive(child) or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
    status = bs.read(tmp_path / "build-status.json")
    assert status is not None and status.state() == "interrupted"


# --- expected times ----------------------------------------------------------------------------------


def steps_for_plan(cached: tuple[str, ...] = ()) -> list[Any]:
    names = ["kubernetes", "etcd", "kwok", "helm", "weed", "sandbox", "regions", "s3"]
    builds = {"kubernetes", "etcd", "kwok", "helm", "weed"}
    return [
        bring_up.Step(n, n, ["true"], build=n in builds, state=bs.CACHED if n in cached else bs.WAITING)
        for n in names
    ]


def test_a_fresh_machine_expects_the_documented_cold_build() -> None:
    steps = steps_for_plan()
    milestones, total, source = bring_up.expectations(steps, {})
    cold = bring_up.MEASURED_COLD
    region_builds = cold["kubernetes"] + cold["etcd"] + cold["kwok"] + cold["helm"]
    assert milestones["regions"] == region_builds + cold["sandbox"] + cold["regions"]
    assert milestones["s3"] == region_builds + cold["weed"] + cold["s3"]
    assert total == max(milestones.values())
    assert source == "the cold build measured in docs/sandbox.md"


def test_cached_pieces_expect_nothing_and_measured_ones_their_last_time() -> None:
    steps = steps_for_plan(cached=("kubernetes", "etcd", "kwok", "helm"))
    timings = {"pieces": {"weed": {"seconds": 50.0}, "sandbox": {"seconds": 12.0}}}
    milestones, _total, source = bring_up.expectations(steps, timings)
    by = {s.name: s.expected for s in steps}
    assert by["kubernetes"] == 0.0 and by["weed"] == 50.0 and by["sandbox"] == 12.0
    assert milestones["regions"] == 12.0 + bring_up.MEASURED_COLD["regions"]
    assert milestones["s3"] == 50.0 + bring_up.MEASURED_COLD["s3"]
    assert source == "the last measured time of each piece"


def test_the_last_bring_up_that_built_the_same_gives_its_milestones(tmp_path: Path) -> None:
    steps = steps_for_plan()
    now = time.time()
    for i, step in enumerate(steps):
        step.state, step.started, step.finished = bs.DONE, now, now + 10 + i
    timings_path = tmp_path / "timings.json"
    bring_up.record_timings(timings_path, steps, started=now - 100)

    recorded = json.loads(timings_path.read_text())
    assert recorded["pieces"]["kubernetes"]["seconds"] == 10.0
    milestones, total, source = bring_up.expectations(steps_for_plan(), recorded)
    assert milestones == {"regions": 116.0, "s3": 117.0} and total == 117.0
    assert source.startswith("the last bring-up here that built the same")


def test_builds_run_at_the_lowest_cpu_priority_and_other_steps_do_not(tmp_path: Path) -> None:
    # Field 19 of /proc/self/stat is the process's nice value.
    steps = [
        bring_up.Step("etcd", "e", sh(f"cut -d' ' -f19 /proc/self/stat > {tmp_path}/build"), build=True),
        bring_up.Step("sandbox", "s", sh(f"cut -d' ' -f19 /proc/self/stat > {tmp_path}/start")),
    ]
    assert make(tmp_path, steps).run() == 0
    assert (tmp_path / "build").read_text().strip() == "19"
    assert (tmp_path / "start").read_text().strip() == "0"


def test_the_regions_wait_for_the_database(tmp_path: Path) -> None:
    ready = tmp_path / "db-ready"
    step = bring_up.Step("regions", "r", sh("true"), needs_file=ready)
    run = make(tmp_path, [step])
    thread = threading.Thread(target=run.run)
    thread.start()
    time.sleep(1.0)
    assert step.state == bs.WAITING  # migrations still running
    ready.touch()
    thread.join(10)
    assert step.state == bs.DONE
