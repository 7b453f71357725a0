"""The outages the drills cause in shared services, each undone however the drill ends.

- `ApiServerPause`: SIGSTOP of one sandbox region's kube-apiserver (found by the sandbox's PID file, checked
  against its command line), SIGCONT to resume. A stopped apiserver accepts TCP but never answers, which is
  what clients see of a hung or partitioned control plane, and resuming restores it exactly. The sandbox's
  start lock is held meanwhile (another session's `sandbox.sh start` would rebuild a region that does not
  answer), and a detached watchdog resumes it even if this test process dies mid-outage.
- `restart_postgres()`: the local cluster serving the test database, restarted as scripts/services.sh
  manages it (pg_ctlcluster, as root).
- `PrivateStripeMock`: scripts/stripe_mock.sh on a port of the drill's own, so the shared stripe-mock keeps
  serving other tests; `CountingProxy` sits in front of it and records every request that reached it.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlparse

from django.db import connection
from kubernetes import client

from tests.fixtures.kube import Sandbox
from tests.support.processes import REPO, free_port


@dataclass
class ApiServerPause:
    sandbox: Sandbox
    region: str
    safety_seconds: float = 90.0  # the watchdog resumes the apiserver this long after the pause at the latest
    _watchdog: subprocess.Popen[bytes] | None = None
    _paused: int | None = None
    _lock: IO[str] | None = None
    paused_at: float | None = None

    @property
    def pid(self) -> int:
        pid = int((self.sandbox.dir / self.region / "pids" / "kube-apiserver.pid").read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        port = urlparse(self.sandbox.servers[self.region]).port
        assert "kube-apiserver" in command and f"--secure-port {port}" in command, command
        return pid

    def pause(self) -> None:
        # Hold the sandbox's start lock for the outage: a concurrent `sandbox.sh start` (another test
        # session's fixture) would otherwise find the region not answering and rebuild it from scratch.
        self._lock = (self.sandbox.dir / "start.lock").open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            pid = self.pid
        except BaseException:
            self._lock.close()  # closing releases the lock
            self._lock = None
            raise
        self._watchdog = subprocess.Popen(
            ["sh", "-c", f"sleep {self.safety_seconds}; kill -CONT {pid}"], start_new_session=True
        )
        os.kill(pid, signal.SIGSTOP)
        self._paused, self.paused_at = pid, time.monotonic()

    def _await_ready(self) -> None:
        api = self.sandbox.api_client(self.region)
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    client.VersionApi(api).get_code(_request_timeout=(2, 5))
                    return
                time.sleep(0.5)
        finally:
            api.close()

    def resume(self) -> None:
        """SIGCONT to the process paused (even if its PID file changed meanwhile), then, once it answers,
        the start lock goes."""
        if self._paused is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._paused, signal.SIGCONT)
        pid_file = self.sandbox.dir / self.region / "pids" / "kube-apiserver.pid"
        now_running = pid_file.read_text().strip() if pid_file.exists() else "none"
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.kill()
            self._watchdog.wait()
        if self._lock is not None:
            self._await_ready()
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        assert now_running == str(self._paused), (
            f"{self.region} was restarted by something else during the outage (apiserver pid {self._paused}, "
            f"now {now_running}): something stopped or started the sandbox without its start lock"
        )


def postgres_cluster() -> tuple[str, str]:
    """(version, name) of the local cluster on the test database's port (pg_lsclusters)."""
    port = str(connection.settings_dict.get("PORT") or 5432)
    listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
    for line in listed.splitlines():
        version, name, cluster_port, *_ = line.split()
        if cluster_port == port:
            return version, name
    raise AssertionError(f"no local PostgreSQL cluster on port {port}:\n{listed}")


def restart_postgres() -> float:
    """Restart the cluster (fast shutdown: sessions are ended, as in a failover); returns how long it took."""
    version, name = postgres_cluster()
    command = ["pg_ctlcluster", version, name, "restart", "-m", "fast"]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    began = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    connection.close()  # this process's session was ended too
    return time.monotonic() - began


@dataclass
class PrivateStripeMock:
    """scripts/stripe_mock.sh with a port and pid file of its own."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "GPUCLOUD_STRIPE_MOCK_PORT": str(self.port),
            "GPUCLOUD_VAR_DIR": str(self.directory),
        }
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "stripe_mock.sh"), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, f"stripe_mock.sh {action}: {result.stderr[-2000:]}"

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")
        port = self.port

        def down() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return True
            return False

        deadline = time.monotonic() + 30
        while not down():
            assert time.monotonic() < deadline, "stripe-mock did not stop"
            time.sleep(0.1)


@dataclass
class Forwarded:
    method: str
    path: str
    idempotency_key: str
    form: dict[str, list[str]]
    status: int | None  # None: stripe-mock did not answer (down); the client's connection was dropped


class CountingProxy:
    """An HTTP proxy to `upstream` that records each request; when upstream is down it drops the
    connection unanswered, as a refused or reset connection looks to the client."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.requests: list[Forwarded] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = Forwarded(
                    self.command,
                    self.path,
                    self.headers.get("Idempotency-Key") or "",
                    parse_qs(body.decode(errors="replace")),
                    None,
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                except OSError:
                    proxy.add(record)
                    self.close_connection = True
                    return
                record.status = response.status
                proxy.add(record)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, record: Forwarded) -> None:
        with self._lock:
            self.requests.append(record)

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
