#!/usr/bin/env python3
"""`make run`'s background bring-up: the Go builds, the sandbox, object storage and the regions' connections,
while the console already serves (scripts/run.sh starts this first, then the servers).

    bring_up.py run [--no-sandbox]   build what is missing, start the sandbox and SeaweedFS, connect the
                                     regions; progress in the status file (apps/core/build_status.py) that
                                     the console's banner reads, each piece's output in var/log/bring-up/
    bring_up.py plan [--no-sandbox]  print what `run` would do, with the expected times, and exit

Pieces and order: the sandbox's binaries (kubernetes, etcd, kwok, helm) first, then SeaweedFS's weed, at
most BRING_UP_JOBS (default 2) Go builds at once, each with `go build -p <cores>`, all sharing the one Go
build cache and module cache (GOCACHE, GOMODCACHE: whatever the environment says, the same for every
piece). A piece whose binaries are cached is not run. The sandbox starts once its four are built, then the
regions are connected (`manage.py seed_catalog`, which reads the sandbox's index); SeaweedFS starts once
weed is built. Each piece's time is printed to the log and kept in $GPUCLOUD_CACHE_DIR/build/timings.json,
whose figures give the next bring-up its expected times (a fresh machine uses the figures measured in
docs/sandbox.md).

The Go builds run at `nice 19`: the web server, worker and operator starting beside them come first. The
regions are connected only once the file named by --db-ready exists (run.sh creates it after migrating).

Standard output carries only the lines a person running `make run` wants (regions connected, object storage
ready, a failure), held back until the file named by --announce-after exists (run.sh creates it once it has
printed the log-in banner), so they come after it. SIGTERM or SIGINT stops the builds in progress (their
process groups); what already started (the sandbox, SeaweedFS) keeps running, as `make run` always left it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apps.core import build_status as bs  # noqa: E402  (standard library only)

# Cold build of each piece on 2 cores with empty caches, one at a time (docs/sandbox.md, "Build"): the
# expected times on a machine that has never measured its own.
MEASURED_COLD = {
    "kubernetes": 346.0,
    "etcd": 95.0,
    "kwok": 110.0,
    "helm": 105.0,
    "weed": 200.0,
    "sandbox": 18.0,
    "regions": 6.0,
    "s3": 6.0,
}
REGION_BUILDS = ("kubernetes", "etcd", "kwok", "helm")


@dataclass
class Step:
    name: str
    label: str
    argv: list[str]
    after: tuple[str, ...] = ()
    build: bool = False  # a Go build: counts against BRING_UP_JOBS, runs at the lowest CPU priority
    needs_file: Path | None = None  # not started before this file exists (the database is migrated)
    marker: Path | None = None  # the build's .complete file: present means cached, nothing to run
    check: Any = None  # a callable(output) -> error message or "" run on success
    state: str = bs.WAITING
    started: float | None = None
    finished: float | None = None
    expected: float | None = None
    error: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "expected": self.expected,
            "error": self.error,
        }


def log(message: str) -> None:
    print(f"[bring-up {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cache_paths() -> dict[str, str]:
    """Versions and binary directories from the sandbox's and s3.sh's own settings (one source of truth)."""
    script = (
        '. sandbox/common.sh; printf "%s\\n" "$GPUCLOUD_CACHE_DIR" "$K8S_VERSION" "$K8S_BIN" "$ETCD_VERSION" '
        '"$ETCD_BIN" "$KWOK_VERSION" "$KWOK_BIN" "$HELM_VERSION" "$HELM_BIN"; bash scripts/s3.sh path'
    )
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    keys = ["cache", "k8s_v", "k8s", "etcd_v", "etcd", "kwok_v", "kwok", "helm_v", "helm", "weed"]
    return dict(zip(keys, out.split("\n"), strict=False))


def _fleet_regions() -> list[str]:
    if os.environ.get("GPUCLOUD_SANDBOX_REGIONS"):
        return os.environ["GPUCLOUD_SANDBOX_REGIONS"].split()
    out = subprocess.run(
        [sys.executable, "sandbox/fleet.py", "regions"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def _connected_check(regions: list[str]) -> Any:
    def check(output: str) -> str:
        line = next((ln for ln in output.splitlines() if ln.startswith("connected to clusters:")), "")
        connected = {r.strip() for r in line.partition(":")[2].split(",")}
        missing = [r for r in regions if r not in connected]
        return f"not connected: {', '.join(missing)} ({line or 'no report'})" if missing else ""

    return check


def plan(sandbox: bool, db_ready: Path | None = None) -> tuple[list[Step], list[str], Path]:
    paths = _cache_paths()
    py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
    steps: list[Step] = []
    regions: list[str] = []
    if sandbox:
        regions = _fleet_regions()
        steps += [
            Step(
                "kubernetes",
                f"Kubernetes {paths['k8s_v']} (apiserver, controller-manager, scheduler, kubectl)",
                ["bash", "sandbox/build.sh", "kubernetes"],
                build=True,
                marker=Path(paths["k8s"]) / ".complete",
            ),
            Step(
                "etcd",
                f"etcd {paths['etcd_v']}",
                ["bash", "sandbox/build.sh", "etcd"],
                build=True,
                marker=Path(paths["etcd"]) / ".complete",
            ),
            Step(
                "kwok",
                f"kwok {paths['kwok_v']}",
                ["bash", "sandbox/build.sh", "kwok"],
                build=True,
                marker=Path(paths["kwok"]) / ".complete",
            ),
            Step(
                "helm",
                f"helm {paths['helm_v']}",
                ["bash", "sandbox/build.sh", "helm"],
                build=True,
                marker=Path(paths["helm"]) / ".complete",
            ),
        ]
    steps.append(
        Step(
            "weed",
            "SeaweedFS (object storage server)",
            ["bash", "scripts/s3.sh", "build"],
            build=True,
            marker=Path(paths["weed"]) / ".complete",
        )
    )
    if sandbox:
        steps += [
            Step(
                "sandbox",
                "start the sandbox's clusters",
                ["bash", "sandbox/sandbox.sh", "start"],
                REGION_BUILDS,
            ),
            Step(
                bs.REGIONS,
                f"connect the regions {', '.join(regions)}",
                [py, "manage.py", "seed_catalog"],
                ("sandbox",),
                check=_connected_check(regions),
                needs_file=db_ready,
            ),
        ]
    steps.append(
        Step(bs.OBJECT_STORAGE, "start object storage", ["bash", "scripts/s3.sh", "start"], ("weed",))
    )
    for step in steps:
        if step.marker is not None and step.marker.exists():
            step.state = bs.CACHED
    return steps, regions, Path(paths["cache"]) / "build" / "timings.json"


# --- expected times ----------------------------------------------------------------------------------


def _load_timings(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def expectations(steps: list[Step], timings: dict[str, Any]) -> tuple[dict[str, float], float, str]:
    """Each step's expected seconds, and seconds from start to each milestone and to the end.

    The last bring-up that built the same pieces gives its measured milestones; otherwise the milestones are
    sums of each piece's last measured time (the Go builds share two cores, so their times add up), and a
    machine without measures uses MEASURED_COLD."""
    measured = timings.get("pieces") if isinstance(timings.get("pieces"), dict) else {}
    for step in steps:
        last = (
            measured.get(step.name, {}).get("seconds") if isinstance(measured.get(step.name), dict) else None
        )
        step.expected = 0.0 if step.state == bs.CACHED else float(last or MEASURED_COLD[step.name])
    todo = sorted(s.name for s in steps if s.state != bs.CACHED)
    for run in reversed(timings.get("runs") or []):
        if isinstance(run, dict) and run.get("todo") == todo and isinstance(run.get("milestones"), dict):
            milestones = {k: float(v) for k, v in run["milestones"].items()}
            return (
                milestones,
                max(milestones.values()),
                f"the last bring-up here that built the same ({_date(run)})",
            )
    by = {s.name: s.expected or 0.0 for s in steps}
    region_builds = sum(by.get(n, 0.0) for n in REGION_BUILDS)
    milestones: dict[str, float] = {}
    if "sandbox" in by:
        milestones[bs.REGIONS] = region_builds + by["sandbox"] + by[bs.REGIONS]
    milestones[bs.OBJECT_STORAGE] = region_builds + by["weed"] + by[bs.OBJECT_STORAGE]
    if not any(s.build and s.state != bs.CACHED for s in steps):
        source = "every binary cached"
    elif measured:
        source = "the last measured time of each piece"
    else:
        source = "the cold build measured in docs/sandbox.md"
    return milestones, max(milestones.values()), source


def _date(run: dict[str, Any]) -> str:
    at = run.get("at")
    return time.strftime("%Y-%m-%d", time.localtime(at)) if isinstance(at, int | float) else "date unknown"


def record_timings(path: Path, steps: list[Step], started: float) -> None:
    timings = _load_timings(path)
    pieces = timings.get("pieces") if isinstance(timings.get("pieces"), dict) else {}
    for step in steps:
        if step.state == bs.DONE and step.started and step.finished:
            pieces[step.name] = {"seconds": round(step.finished - step.started, 1), "at": int(step.finished)}
    milestones = {
        s.name: round(s.finished - started, 1)
        for s in steps
        if s.name in (bs.REGIONS, bs.OBJECT_STORAGE) and s.finished
    }
    runs = [r for r in timings.get("runs") or [] if isinstance(r, dict)][-9:]
    runs.append(
        {
            "todo": sorted(s.name for s in steps if s.state == bs.DONE),
            "milestones": milestones,
            "at": int(time.time()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pieces": pieces, "runs": runs}, indent=1))


# --- running -----------------------------------------------------------------------------------------


@dataclass
class BringUp:
    steps: list[Step]
    regions: list[str]
    status_file: Path
    log_dir: Path
    jobs: int
    announce_after: Path | None
    milestones: dict[str, float] = field(default_factory=dict)
    expected_total: float = 0.0
    expected_source: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    pending_lines: list[str] = field(default_factory=list)
    stopping: bool = False

    def by_name(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def write_status(self) -> None:
        bs.write(
            self.status_file,
            {
                "pid": os.getpid(),
                "started": self.started,
                "finished": self.finished,
                "regions": self.regions,
                "expected_total": self.expected_total,
                "expected_by": self.milestones,
                "expected_source": self.expected_source,
                "log": str(self.log_dir),
                "pieces": [s.public() for s in self.steps],
            },
        )

    def announce(self, line: str) -> None:
        self.pending_lines.append(line)
        self.flush_announcements()

    def flush_announcements(self) -> None:
        if self.announce_after is not None and not self.announce_after.exists():
            return
        for line in self.pending_lines:
            print(line, flush=True)
        self.pending_lines.clear()

    def ready(self, step: Step) -> bool:
        if step.state != bs.WAITING:
            return False
        if step.needs_file is not None and not step.needs_file.exists():
            return False
        if any(
            self.by_name(n).state not in bs.FINISHED
            for n in step.after
            if any(s.name == n for s in self.steps)
        ):
            return False
        if step.build:
            return sum(1 for s in self.steps if s.build and s.state == bs.RUNNING) < self.jobs
        return True

    def blocked(self, step: Step) -> str:
        """The failed piece this one waits for, or ""."""
        for name in step.after:
            dep = next((s for s in self.steps if s.name == name), None)
            if dep is not None and (dep.state == bs.FAILED or self.blocked(dep)):
                return name
        return ""

    def start(self, step: Step) -> None:
        step.log = self.log_dir / f"{step.name}.log"
        step.state, step.started = bs.RUNNING, time.time()
        handle = open(step.log, "wb")  # noqa: SIM115 (the child writes it; closed when it ends)
        # The builds yield the CPU to the web server, worker and operator starting beside them (on 2 cores,
        # un-niced builds delayed the console's first answer by minutes), and take all of it when idle.
        argv = ["nice", "-n", "19", *step.argv] if step.build else step.argv
        step.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: a stop ends the go build under it too
        )
        handle.close()
        expected = bs.human_duration(step.expected or 0)
        log(f"{step.name}: started ({step.label}; expected {expected}; log {step.log})")

    def finish(self, step: Step, code: int) -> None:
        step.finished = time.time()
        seconds = step.finished - (step.started or step.finished)
        error = ""
        if code != 0:
            error = f"exited with status {code}"
        elif step.check is not None and step.log is not None:
            error = step.check(step.log.read_text(errors="replace"))
        if error:
            step.state, step.error = bs.FAILED, error
            tail = step.log.read_text(errors="replace").splitlines()[-15:] if step.log else []
            log(f"{step.name}: FAILED after {seconds:.0f} s: {error}; last lines of {step.log}:")
            for line in tail:
                print(f"    {line}", file=sys.stderr)
            self.announce(
                f"[bring-up] ERROR: {step.label} failed after {bs.human_duration(seconds)} ({error}); see "
                f"{step.log}. Launches stay pending and object storage answers 503 until it works: fix the "
                "cause and run `make run` again."
            )
            return
        step.state = bs.DONE
        log(f"{step.name}: done in {seconds:.0f} s (expected {step.expected or 0:.0f} s)")
        elapsed = bs.human_duration(step.finished - self.started)
        if step.name == bs.REGIONS:
            self.announce(
                f"regions {', '.join(self.regions)} connected to the sandbox's clusters {elapsed} after "
                "start: launches run now"
            )
        elif step.name == bs.OBJECT_STORAGE:
            self.announce(f"object storage is ready ({elapsed} after start)")

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def kill_running(self) -> None:
        running = [s for s in self.steps if s.proc is not None and s.proc.poll() is None]
        for step in running:
            assert step.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for step in running:
            assert step.proc is not None
            try:
                step.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(step.proc.pid, signal.SIGKILL)
            log(f"{step.name}: stopped after {time.time() - (step.started or time.time()):.0f} s")

    def run(self) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cached = [s.name for s in self.steps if s.state == bs.CACHED]
        log(
            f"bring-up: {', '.join(s.name for s in self.steps if s.state == bs.WAITING)}"
            f"{f' (cached: {chr(44).join(cached)})' if cached else ''}; up to {self.jobs} Go builds at once; "
            f"expected {bs.human_duration(self.expected_total)} ({self.expected_source})"
        )
        self.write_status()
        while not self.stopping:
            for step in self.steps:
                if (
                    step.proc is not None
                    and step.state == bs.RUNNING
                    and (code := step.proc.poll()) is not None
                ):
                    self.finish(step, code)
            for step in self.steps:
                if step.state == bs.WAITING and self.blocked(step):
                    step.state, step.error = bs.FAILED, f"needs {self.blocked(step)}, which failed"
                elif self.ready(step):
                    self.start(step)
            self.write_status()
            self.flush_announcements()
            if all(s.state in (*bs.FINISHED, bs.FAILED) for s in self.steps):
                break
            time.sleep(0.5)
        if self.stopping:
            self.kill_running()
        self.finished = time.time()
        self.write_status()
        self.summary()
        while self.pending_lines and not self.stopping:  # wait for the banner before the last lines
            self.flush_announcements()
            time.sleep(0.5)
        failed = [s for s in self.steps if s.state == bs.FAILED]
        return 1 if failed or self.stopping else 0

    def summary(self) -> None:
        parts = []
        for step in self.steps:
            if step.state == bs.CACHED:
                parts.append(f"{step.name} cached")
            elif step.started and step.finished:
                outcome = "" if step.state == bs.DONE else f" ({step.state})"
                parts.append(f"{step.name} {step.finished - step.started:.0f} s{outcome}")
            else:
                parts.append(f"{step.name} {step.state}")
        total = (self.finished or time.time()) - self.started
        log(f"bring-up finished in {total:.0f} s: {', '.join(parts)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "plan"])
    parser.add_argument("--no-sandbox", action="store_true", help="object storage only (make run SANDBOX=0)")
    parser.add_argument("--announce-after", type=Path, help="hold standard output until this file exists")
    parser.add_argument("--db-ready", type=Path, help="connect the regions only once this file exists")
    args = parser.parse_args()
    steps, regions, timings_path = plan(sandbox=not args.no_sandbox, db_ready=args.db_ready)
    timings = _load_timings(timings_path)
    milestones, total, source = expectations(steps, timings)
    status_file = Path(os.environ.get("GPUCLOUD_BUILD_STATUS_FILE") or ROOT / "var" / "build-status.json")
    if args.command == "plan":
        for step in steps:
            print(f"{step.name:<11} {step.state:<8} expected {step.expected or 0:>5.0f} s  {step.label}")
        print(f"milestones: {milestones}; total {total:.0f} s ({source})")
        return 0
    bring_up = BringUp(
        steps=steps,
        regions=regions,
        status_file=status_file,
        log_dir=ROOT / "var" / "log" / "bring-up",
        jobs=max(1, int(os.environ.get("BRING_UP_JOBS") or 2)),
        announce_after=args.announce_after,
        milestones=milestones,
        expected_total=total,
        expected_source=source,
    )
    signal.signal(signal.SIGTERM, bring_up.stop)
    signal.signal(signal.SIGINT, bring_up.stop)
    code = bring_up.run()
    if code == 0 and any(s.state == bs.DONE for s in steps):
        record_timings(timings_path, steps, bring_up.started)
    return code


if __name__ == "__main__":
    sys.exit(main())
