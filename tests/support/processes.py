"""Real processes for the multi-replica tests: web servers, beats, workers and operators on the test database.

Each process writes to its own log file (shown when a test fails to wait for something) and is killed, if
still running, by `Processes.stop_all()`. Waits poll with generous bounds: they are there for a hung
process on a loaded machine, not to measure speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

REPO = Path(settings.BASE_DIR)
PYTHON = sys.executable
WAIT = 120.0  # seconds; a bound for a hung process, not a performance assertion


def subprocess_database_url() -> str:
    """The test database of this pytest process, for subprocesses (their DATABASE_URL)."""
    db = connection.settings_dict
    return (
        f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node or the OOM killer takes it."""
        if self.alive():
            self.popen.kill()
        self.popen.wait(WAIT)

    def terminate(self, timeout: float = WAIT) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)


@dataclass
class Processes:
    """Starts processes with the test database and settings; `stop_all()` in a fixture's teardown."""

    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    started: list[Process] = field(default_factory=list)

    def start(self, name: str, args: list[str], **env: str) -> Process:
        log = self.directory / f"{name}.log"
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": subprocess_database_url(),
            "PYTHONUNBUFFERED": "1",
            # Several of a kind run side by side here: no fixed metrics ports.
            "METRICS_WORKER_PORT": "0",
            "METRICS_OPERATOR_PORT": "0",
            **self.env,
            **env,
        }
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                args, cwd=REPO, env=full_env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.output()[-3000:]}" for p in self.started)

    def stop_all(self) -> None:
        for process in self.started:
            if process.alive():
                with contextlib.suppress(Exception):
                    process.terminate(timeout=20)
            if process.alive():
                process.kill()


def wait_for(
    predicate: Callable[[], Any], *, what: str, timeout: float = WAIT, processes: Processes | None = None
) -> Any:
    """Polls `predicate` until it returns something truthy and returns that; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{processes.logs()}" if processes is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(0.2)
