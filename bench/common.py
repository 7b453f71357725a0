"""What every benchmark shares: the command line, progress lines, percentiles, the machine, results."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VAR = REPO / "var" / "bench"
RESULTS = VAR / "results"


_LOCK: Any = None


def exclusive() -> None:
    """One benchmark run at a time: they share the database, the broker and the dedicated cluster."""
    global _LOCK
    import fcntl

    VAR.mkdir(parents=True, exist_ok=True)
    _LOCK = (VAR / ".lock").open("w")
    try:
        fcntl.flock(_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fail("another benchmark run holds var/bench/.lock; wait for it to finish")


def setup_django() -> None:
    exclusive()
    # Never another settings module (make exports config.settings.dev): bench/db.py drops its database.
    if not os.environ.get("DJANGO_SETTINGS_MODULE", "").startswith("bench."):
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # in-process requests would log a line each
    import warnings

    import django

    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)

    django.setup()


class Progress:
    """One line per step on stdout, with the seconds since the benchmark started."""

    def __init__(self, name: str):
        self.name, self.started = name, time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[bench {self.name} {time.monotonic() - self.started:7.1f}s] {message}", flush=True)

    def every(self, total: int, what: str, parts: int = 10) -> Callable[[int], None]:
        """A callback to call with a count: prints `what` at every tenth of `total` (and at the end)."""
        step = max(1, total // parts)

        def tick(done: int) -> None:
            if done == total or done % step == 0:
                self(f"{what}: {done}/{total}")

        return tick


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    return {f"p{p}_ms": round(percentile(seconds, p) * 1000, 1) for p in (50, 95, 99)} | {
        "mean_ms": round(sum(seconds) / len(seconds) * 1000, 1) if seconds else math.nan
    }


def ratio(ours: float, baseline: float) -> float:
    return round(ours / baseline, 2) if baseline else math.inf


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return math.nan


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# Between benchmarks: wait until the 1-minute load average is below the number of cores (the previous
# benchmark's processes and clients have stopped competing), at most this long (BENCH_SETTLE_SECONDS).
SETTLE_MAX_SECONDS = 300.0
SETTLE_POLL_SECONDS = 5.0


def load_settled(load: Sequence[float], cores: int) -> bool:
    """Whether the 1-minute load average is below the core count (an unreadable load counts as settled)."""
    return not load or load[0] < cores


def settle_load(
    progress: Callable[[str], None],
    *,
    max_seconds: float | None = None,
    cores: int | None = None,
    read: Callable[[], list[float]] = load_average,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Wait for load_settled (at most max_seconds), printing the load average before and after."""
    if max_seconds is None:
        max_seconds = float(os.environ.get("BENCH_SETTLE_SECONDS", SETTLE_MAX_SECONDS))
    cores = cores or os.cpu_count() or 1
    start = clock()
    load = read()
    progress(
        f"load average {load} on {cores} cores; waiting (at most {max_seconds:.0f}s) for 1-min < {cores}"
    )
    while not load_settled(load, cores) and clock() - start < max_seconds:
        sleep(SETTLE_POLL_SECONDS)
        load = read()
    waited = round(clock() - start, 1)
    settled = load_settled(load, cores)
    progress(f"load average {load} after {waited}s" + ("" if settled else " (not settled: going on)"))
    return {"load_average": load, "waited_seconds": waited, "settled": settled}


def parse_sizes(text: str) -> list[int]:
    """`1000,5000,20000` -> [1000, 5000, 20000]: positive, ascending, no repeats."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must be integers separated by commas, not {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive integers")
    if sorted(set(sizes)) != sizes:
        raise argparse.ArgumentTypeError("sizes must be ascending without repeats")
    return sizes


def machine() -> dict[str, Any]:
    from bench import db

    # Through the server's maintenance database: the benchmark database may not exist yet (a fresh machine,
    # or an interrupted run that dropped it); each benchmark recreates it first.
    with db.admin_connection() as admin:
        row = admin.execute("SHOW server_version").fetchone()
    pg_version = row[0] if row else "unknown"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
    }


def parser(description: str, default_n: int, n_help: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--n", type=int, default=default_n, help=f"{n_help} (default {default_n})")
    return p


def now_utc() -> datetime:
    return datetime.now(UTC)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """var/bench/results/<date>-<name>.json: one file per benchmark run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{now_utc():%Y%m%dT%H%M%SZ}-{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def run_main(name: str, run: Callable[[int, Progress], dict[str, Any]], args: argparse.Namespace) -> int:
    """A benchmark's `python -m bench.<name>` entry point: runs it, prints and writes the result."""
    setup_django()
    from bench import report

    progress = Progress(name)
    result = measure(name, run, args.n, progress)
    path = write_result(name, {"machine": machine(), **result})
    progress(f"result written to {path.relative_to(REPO)}")
    print(report.one_line(name, result), flush=True)
    return 0 if result.get("ok") else 1


def measure(
    name: str, run: Callable[[int, Progress], dict[str, Any]], n: int, progress: Progress
) -> dict[str, Any]:
    """Run one benchmark; a failure is reported and the run goes on. A benchmark that lost PostgreSQL (the
    resilience drills restart it, and they may run on the same machine) is run once more."""
    import traceback

    from django.db import OperationalError, connections

    settled = settle_load(progress)
    for attempt in (1, 2):
        started = now_utc()
        load_before = load_average()
        progress(f"starting (size {n}, load average {load_before})")
        t0 = time.monotonic()
        try:
            figures = run(n, progress)
            ok, error = True, None
        except Exception as exc:
            traceback.print_exc()
            figures, ok, error = {}, False, f"{type(exc).__name__}: {exc}"
            lost_database = isinstance(exc, OperationalError) or "psycopg" in type(exc).__module__
            if attempt == 1 and lost_database:
                progress("lost the database connection; waiting for PostgreSQL and running it again")
                connections.close_all()
                _wait_database()
                continue
        break
    return {
        "name": name,
        "size": n,
        "date": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - t0, 1),
        "load_average_before": load_before,
        "load_settle": settled,
        "load_average_after": load_average(),
        "attempts": attempt,
        "ok": ok,
        "error": error,
        "figures": figures,
    }


def _wait_database(timeout: float = 300.0) -> None:
    from django.db import connection

    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.ensure_connection()
            return
        except Exception:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(1)
