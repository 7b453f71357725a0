"""gpucloud-sshd (images/sshd): the binary, built once per session by sandbox/build.sh, and a running server.

Each server runs on 127.0.0.1 with a free port, a temporary authorized_keys and host key directory; tests talk
to it with the real OpenSSH client.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from tests.support.processes import free_port

REPO = Path(settings.BASE_DIR)
WAIT = 30.0  # seconds; a bound for a hung process on a loaded machine, not a performance assertion


def _fail(message: str) -> None:
    where = "CI=true: " if os.environ.get("CI") == "true" else ""
    pytest.fail(f"{where}{message}", pytrace=False)


@pytest.fixture(scope="session")
def sshd_bin() -> Path:
    """The gpucloud-sshd binary from sandbox/build.sh's cache (built when its sources changed)."""
    if shutil.which("go") is None:
        _fail("go is not on PATH: gpucloud-sshd cannot be built (docs/sandbox.md, first run)")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        _fail("the OpenSSH client (ssh, ssh-keygen) is not installed: apt-get install openssh-client")
    built = subprocess.run(
        ["bash", str(REPO / "sandbox" / "build.sh"), "gpucloud-sshd"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if built.returncode != 0:
        _fail(f"sandbox/build.sh gpucloud-sshd failed:\n{built.stderr[-3000:]}")
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.is_file() and os.access(path, os.X_OK), path
    return path


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        timeout=WAIT,
    )
    return path


def banner(port: int, timeout: float = 2.0) -> bytes:
    """The first line the server sends on 127.0.0.1:port, b"" when it closes or does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.makefile("rb").readline()
    except OSError:
        return b""


@dataclass
class Sshd:
    """A running `gpucloud-sshd run` and an ssh client for it."""

    binary: Path
    directory: Path
    port: int
    key: Path  # authorized
    authorized_keys: Path
    popen: subprocess.Popen[bytes] | None = None
    stderr_log: Path = field(init=False)
    stdout_log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_log = self.directory / "sshd.stderr"
        self.stdout_log = self.directory / "sshd.stdout"

    def start(self, *extra: str, preexec: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        argv = [
            *(preexec or []),
            str(self.binary),
            "run",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--authorized-keys",
            str(self.authorized_keys),
            "--host-key-dir",
            str(self.directory / "hostkeys"),
            *extra,
        ]
        with self.stdout_log.open("wb") as out, self.stderr_log.open("wb") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, env=env)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if banner(self.port).startswith(b"SSH-2.0-"):
                return
            assert self.popen is not None
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"gpucloud-sshd did not answer on port {self.port}:\n{self.log()}")

    def log(self) -> str:
        return self.stderr_log.read_text(errors="replace") if self.stderr_log.exists() else ""

    def ssh(
        self, *args: str, key: Path | None = None, stdin: str = "", timeout: float = WAIT
    ) -> subprocess.CompletedProcess[str]:
        """`ssh [args...]` as user x with the authorized key (or `key`); stdin is sent and then EOF."""
        return subprocess.run(
            [*ssh_argv(self.port, key or self.key), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(WAIT)


def ssh_argv(port: int, key: Path) -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",  # no user or system client configuration
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "LogLevel=ERROR",
        "-i",
        str(key),
        "-p",
        str(port),
        "x@127.0.0.1",
    ]


@pytest.fixture
def sshd_setup(sshd_bin: Path, tmp_path: Path) -> Iterator[Sshd]:
    """A server configured (keys, port) but not started: for tests that start it their own way."""
    key = keygen(tmp_path / "id_ed25519")
    authorized_keys = tmp_path / "authorized_keys"
    authorized_keys.write_text(Path(f"{key}.pub").read_text())
    server = Sshd(
        binary=sshd_bin, directory=tmp_path, port=free_port(), key=key, authorized_keys=authorized_keys
    )
    yield server
    server.stop()


@pytest.fixture
def sshd(sshd_setup: Sshd) -> Sshd:
    """A running server without a command (a dev box)."""
    sshd_setup.start()
    sshd_setup.wait_ready()
    return sshd_setup
