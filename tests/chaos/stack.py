"""The control plane of a drill as real processes on the test database: two web servers (gunicorn), a Celery
worker and an operator, each of which the drill may SIGKILL and start again.

A kill takes the whole process group (gunicorn's master and workers, Celery's pool), as when the container
or its node dies; a restart reuses the same command and port, so clients see the server come back where it
was. Built on tests/support/processes.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests
from django.conf import settings

from tests.support.processes import PYTHON, Process, Processes, free_port, wait_for

OPERATOR_RESYNC_SECONDS = 5
OPERATOR_LEASE_SECONDS = 10


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Service:
    """One role of the control plane: started, SIGKILLed and restarted under the same name and command."""

    name: str
    args: list[str]
    processes: Processes
    ready: Callable[[Process], bool] = lambda _process: True
    url: str = ""  # web servers: where they answer
    current: Process | None = None
    kills: int = 0
    _starts: int = 0

    def start(self, *, wait: bool = True) -> Process:
        self._starts += 1
        self.current = self.processes.start(f"{self.name}-{self._starts}", self.args)
        if wait:
            self.wait_ready()
        return self.current

    def wait_ready(self) -> None:
        process = self.current
        assert process is not None
        wait_for(lambda: self.ready(process), what=f"{self.name} to be ready", processes=self.processes)

    def kill(self) -> None:
        """SIGKILL to the process group: no handler runs, no connection is closed politely."""
        process = self.current
        if process is None or not process.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.popen.wait(60)
        self.kills += 1

    def alive(self) -> bool:
        return self.current is not None and self.current.alive()


@dataclass
class Stack:
    directory: Path
    queue: str = field(default_factory=lambda: f"chaos-{uuid.uuid4().hex[:10]}")
    processes: Processes = field(init=False)
    webs: list[Service] = field(default_factory=list)
    worker: Service | None = None
    operator: Service | None = None

    def __post_init__(self) -> None:
        self.processes = Processes(
            self.directory,
            env={
                "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
                "CHAOS_QUEUE": self.queue,
                "OPERATOR_LEASE_SECONDS": str(OPERATOR_LEASE_SECONDS),
            },
        )

    @property
    def urls(self) -> list[str]:
        return [service.url for service in self.webs]

    def add_web(self) -> Service:
        port = free_port()
        args = [
            PYTHON, "-m", "gunicorn", "config.wsgi:application", "--workers=1", "--worker-class=gthread",
            "--threads=4", "--timeout=60", "--graceful-timeout=5", f"--bind=127.0.0.1:{port}",
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        service = Service(
            f"web{len(self.webs) + 1}", args, self.processes, ready=lambda _p: _healthy(url), url=url
        )
        self.webs.append(service)
        return service

    def add_worker(self) -> Service:
        args = [
            PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=2",
            f"--queues={self.queue}", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        self.worker = Service("worker", args, self.processes, ready=lambda p: " ready." in p.output())
        return self.worker

    def add_operator(self) -> Service:
        args = [
            PYTHON, "manage.py", "operator", f"--resync-seconds={OPERATOR_RESYNC_SECONDS}",
            "--lock-retry-seconds=1", "--watch-timeout-seconds=10",
        ]  # fmt: skip
        self.operator = Service("operator", args, self.processes, ready=lambda p: "leading" in p.output())
        return self.operator

    def services(self) -> list[Service]:
        return [*self.webs, *(s for s in (self.worker, self.operator) if s is not None)]

    def start_all(self) -> None:
        for service in self.services():
            service.start(wait=False)
        for service in self.services():
            service.wait_ready()

    def stop_all(self) -> None:
        self.processes.stop_all()
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(self.queue)

    def logs(self) -> str:
        return self.processes.logs()
