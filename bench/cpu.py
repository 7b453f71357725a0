"""CPU seconds spent by each part of the machine during a phase of a benchmark, read from /proc.

On a 2-core machine a phase whose parts together burn close to 2 CPU seconds per second of wall time is
bound by the CPU, whatever its locks or round trips: the per-launch CPU of each part (our web, operator and
worker, PostgreSQL, the cluster's processes, the benchmark's own clients) is then the floor it stands on,
and the side-by-side figure with the raw baseline says how much of it is ours (docs/benchmarks.md).

Each process counts its own time and that of its children that have exited (a PostgreSQL backend that
closed is counted in the postmaster), so every process's CPU is counted once.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")

# The cluster's and the services' programs, by the name of the executable; Python processes by their
# arguments (the first that matches names it).
_PROGRAMS = {
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kwok": "kwok",
    "kube-scheduler": "kube-scheduler",
    "kube-controller-manager": "kube-controller-manager",
    "redis-server": "redis",
    "postgres": "postgres",
}
_PYTHON_PARTS = (
    ("web", "gunicorn"),
    ("worker", "celery"),
    ("operator", "manage.py operator"),
    ("bench", "-m bench"),
)


def part_of(argv: list[str]) -> str:
    if not argv:
        return "other"
    if argv[0].startswith("postgres:"):  # a backend or background process names itself so
        return "postgres"
    # Some programs rewrite their title into one argument ("redis-server 127.0.0.1:6390").
    program = _PROGRAMS.get(os.path.basename(argv[0].split()[0]).split(":")[0])
    if program:
        return program
    if os.path.basename(argv[0]).startswith("python"):
        line = " ".join(argv[1:])
        for name, needle in _PYTHON_PARTS:
            if needle in line:
                return name
    return "other"


def _cpu_seconds(stat: str) -> float:
    # After the command name in parentheses (which may hold spaces): fields 14 to 17 of proc(5) are
    # utime, stime, cutime and cstime, in clock ticks.
    fields = stat.rpartition(")")[2].split()
    return sum(int(value) for value in fields[11:15]) / TICKS


def sample() -> dict[str, float]:
    """CPU seconds used so far by each part's live processes (and their exited children)."""
    used: dict[str, float] = defaultdict(float)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile
            continue
        used[part_of([arg for arg in argv if arg])] += _cpu_seconds(stat)
    return dict(used)


def spent(
    before: Mapping[str, float], after: Mapping[str, float], *, wall_seconds: float, per: int
) -> dict[str, Any]:
    """CPU seconds per part between two samples (processes started in between count from zero; those that
    ended, with their exited children, are lost: the phases here keep their servers up), per unit of work
    in milliseconds, and how busy the machine's cores were."""
    parts = {
        name: round(max(0.0, after.get(name, 0.0) - before.get(name, 0.0)), 2)
        for name in sorted(set(after) | set(before))
    }
    parts = {name: seconds for name, seconds in parts.items() if seconds > 0}
    total = sum(parts.values())
    cores = os.cpu_count() or 1
    return {
        "cpu_seconds": parts,
        "cpu_seconds_total": round(total, 2),
        "cpu_ms_per_unit": {name: round(1000 * s / per, 1) for name, s in parts.items()} if per else {},
        "cores": cores,
        "cores_busy": round(total / (wall_seconds * cores), 2) if wall_seconds > 0 else None,
    }
