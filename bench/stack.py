"""The servers a benchmark measures, as real processes on the benchmark database: gunicorn (the web
server), a Celery worker (the reconcile tasks launches queue) and `manage.py operator`.

Built on tests/support/processes.py (the multi-replica tests' helpers); logs go to var/bench/logs/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import VAR
from tests.support.processes import PYTHON, Process, Processes, free_port, wait_for

WEB_WORKERS = 2
WEB_THREADS = 8


class Stack:
    def __init__(self, name: str):
        directory = VAR / "logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{name}"
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.processes = Processes(
            Path(directory),
            env={
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "BENCH_DATABASE": os.environ.get("BENCH_DATABASE", "gpucloud_bench"),
                "LOG_LEVEL": "WARNING",  # the same for every server; request lines would dominate the logs
            },
        )
        self.url = ""

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.processes.stop_all()

    def web(self, *, workers: int = WEB_WORKERS, threads: int = WEB_THREADS) -> str:
        port = free_port()
        self.processes.start(
            "web",
            [
                PYTHON, "-m", "gunicorn", "config.wsgi:application", f"--bind=127.0.0.1:{port}",
                f"--workers={workers}", "--worker-class=gthread", f"--threads={threads}", "--timeout=120",
            ],
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, what=f"the web server at {self.url}", processes=self.processes)
        return self.url

    def web_as_make_run(self, *, workers: str, threads: str) -> str:
        """The web server started by scripts/web.sh, as `make run` starts it: config/gunicorn.py, whitenoise
        over collected static files, each worker's database pool as big as its threads."""
        port = free_port()
        self.processes.start(
            "web",
            ["bash", "scripts/web.sh"],
            WEB_BIND=f"127.0.0.1:{port}",
            WEB_WORKERS=workers,
            WEB_THREADS=threads,
            PYTHON=PYTHON,
            DATABASE_POOL="1",  # as make run (the test settings the benchmarks use leave it off)
            STATIC_ROOT=str(VAR / "staticfiles"),
        )
        self.url = f"http://127.0.0.1:{port}"
        wait_for(self._answers, what=f"the web server at {self.url}", processes=self.processes)
        return self.url

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def worker(self, *, concurrency: int = 4) -> Process:
        return self.processes.start(
            "worker",
            [
                PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=WARNING",
                f"--concurrency={concurrency}", "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--purge",  # tasks an interrupted benchmark left in the broker name rows that are gone
            ],
        )  # fmt: skip

    def operator(self, *regions: str, resync_seconds: float = 30.0, events: bool = True) -> Process:
        args = [PYTHON, "manage.py", "operator", f"--resync-seconds={resync_seconds}"]
        args += [f"--region={r}" for r in regions]
        if not events:
            args.append("--no-events")
        return self.processes.start("operator", args)


def wait_operator_leads(region: Any, since: Any, stack: Stack, timeout: float = 300.0) -> None:
    """The operator leads the region once it has written the region's capacity after `since`."""
    from apps.catalog.models import RegionCapacity

    wait_for(
        lambda: RegionCapacity.objects.filter(region=region, observed_at__gte=since).exists(),
        what=f"the operator to lead {region.slug}",
        timeout=timeout,
        processes=stack.processes,
    )


def rss_kib(pid: int) -> dict[str, int]:
    """Resident memory of a process now and at its peak (VmRSS, VmHWM), in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out
