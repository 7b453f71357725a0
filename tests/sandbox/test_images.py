"""The real nodes' images and the local registry (sandbox/images.sh, docs/sandbox.md "Images and the local
registry"): a real crane registry on 127.0.0.1, real pushes, real image contents, the real pause binary.

A missing tool (go, mmdebstrap, readelf, unshare, curl) fails these tests; they never skip. The first run
builds the instance rootfs with mmdebstrap (minutes, then cached under ~/.cache/gpucloud/images).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from apps.catalog.catalog_seed import IMAGES

REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "sandbox"
T = TypeVar("T")


def bash(script: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Runs SCRIPT with sandbox/common.sh and sandbox/images.sh sourced, as the node scripts do."""
    prelude = f"set -euo pipefail; . {SANDBOX}/common.sh; . {SANDBOX}/images.sh\n"
    return subprocess.run(
        ["bash", "-c", prelude + script, "images-test", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(script: str, *args: str, timeout: float = 1800) -> str:
    result = bash(script, *args, timeout=timeout)
    assert result.returncode == 0, f"{script!r} failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip()


@dataclass(frozen=True)
class Built:
    crane: Path
    pause: Path


@pytest.fixture(scope="session")
def built() -> Built:
    for tool in ("go", "mmdebstrap", "readelf", "unshare", "curl", "tar", "gzip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; the image tests need it")
    build = subprocess.run(
        ["bash", str(SANDBOX / "build.sh"), "crane", "pause"], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stderr[-3000:]
    crane = Path(ok('echo "$CRANE_BIN/crane"'))
    pause = Path(ok('echo "$(pause_bin_dir)/pause"'))
    assert crane.is_file() and pause.is_file()
    return Built(crane=crane, pause=pause)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Registry:
    addr: str
    state: Path
    logs: Path
    tools_ref: str
    ref_file: Path
    sshd: Path
    built: Built

    def crane(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self.built.crane), "--insecure", *args], capture_output=True, timeout=300)

    def manifest(self, ref: str) -> dict[str, object]:
        result = self.crane("manifest", f"{self.addr}/{ref}")
        assert result.returncode == 0, f"{ref}: {result.stderr.decode()[-500:]}"
        return json.loads(result.stdout)

    def config(self, ref: str) -> dict[str, object]:
        result = self.crane("config", f"{self.addr}/{ref}")
        assert result.returncode == 0, f"{ref}: {result.stderr.decode()[-500:]}"
        return json.loads(result.stdout)

    def digest(self, ref: str) -> str:
        result = self.crane("digest", f"{self.addr}/{ref}")
        assert result.returncode == 0, f"{ref}: {result.stderr.decode()[-500:]}"
        return result.stdout.decode().strip()

    def members(self, ref: str) -> dict[str, tarfile.TarInfo]:
        """The flattened filesystem of REF (`crane export REF -`), by path without a leading ./ or /."""
        result = subprocess.run(
            [str(self.built.crane), "--insecure", "export", f"{self.addr}/{ref}", "-"],
            capture_output=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr.decode()[-500:]
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            return {m.name.removeprefix("./").lstrip("/"): m for m in tar.getmembers()}

    def read(self, ref: str, path: str) -> str:
        """The text of one file of REF's flattened filesystem."""
        result = subprocess.run(
            [str(self.built.crane), "--insecure", "export", f"{self.addr}/{ref}", "-"],
            capture_output=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr.decode()[-500:]
        with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
            member = tar.extractfile(path)
            assert member is not None, path
            return member.read().decode()

    def push(self) -> tuple[str, float]:
        start = time.monotonic()
        out = ok(
            'push_sandbox_images "$1" "$2" "$3"', self.addr, str(self.sshd), str(self.ref_file), timeout=1800
        )
        return out.splitlines()[-1], time.monotonic() - start


@pytest.fixture(scope="module")
def registry(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("registry")
    addr = f"127.0.0.1:{free_port()}"
    state, logs = base / "state", base / "logs"
    ok('start_registry "$1" "$2" "$3"', addr, str(state), str(logs))
    # The test stands a small static binary (the pause binary) in for gpucloud-sshd.
    reg = Registry(addr, state, logs, "", base / "tools-image", built.pause, built)
    try:
        tools_ref, seconds = reg.push()
        print(f"first push: {seconds:.1f} s")
        yield Registry(addr, state, logs, tools_ref, reg.ref_file, built.pause, built)
    finally:
        bash('stop_registry "$1"', str(state))


INSTANCE = "gpucloud/instance-debian:bookworm"
ALIASES = [
    "nvidia/cuda:12.4.1-base-ubuntu22.04",
    "nvidia/pytorch:24.08-py3",
    "jupyter/pytorch-notebook:cuda12-python-3.11",
]


def test_pause_image_is_what_containerd_pins(registry: Registry) -> None:
    config = registry.config("pause:3.10")
    assert config["os"] == "linux"
    assert config["config"]["Entrypoint"] == ["/pause"]  # type: ignore[index]
    members = registry.members("pause:3.10")
    assert list(members) == ["pause"]
    assert members["pause"].mode & 0o111 and members["pause"].uid == 0


def test_instance_image_has_python_mpi_and_ssh(registry: Registry) -> None:
    config = registry.config(INSTANCE)
    assert config["os"] == "linux"
    assert config["config"].get("Entrypoint") is None  # type: ignore[attr-defined]
    assert config["config"]["Cmd"] == ["/bin/bash"]  # type: ignore[index]
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in config["config"]["Env"])  # type: ignore[index]
    members = registry.members(INSTANCE)
    tools = ("python3", "ssh", "mpirun", "bash", "nc", "ip", "ps", "ping", "less")
    for path in (f"usr/bin/{tool}" for tool in tools):
        assert path in members, path
    assert any(p.startswith("usr/lib/python3/dist-packages/mpi4py/") and p.endswith(".so") for p in members)
    # Cleaned: no apt lists (an empty lock file stays), no apt sources of the build host, no device nodes.
    assert not [p for p in members if p.startswith("var/lib/apt/lists/") and members[p].size > 0]
    assert not [p for p in members if p.startswith("dev/")]
    assert members["bin"].issym()  # merged /usr: /bin/bash is /usr/bin/bash
    assert not [p for p in members if p.startswith("etc/apt/sources.list") and members[p].isfile()]
    # A user for the uid instances run as: the OpenSSH client (mpirun's way to a cluster's other nodes)
    # refuses to run for a uid without a passwd entry.
    passwd = registry.read(INSTANCE, "etc/passwd").splitlines()
    assert "gpucloud:x:1000:1000::/home/gpucloud:/bin/bash" in passwd
    assert "gpucloud:x:1000:" in registry.read(INSTANCE, "etc/group").splitlines()


def test_catalog_stock_images_are_aliases_of_the_instance_image(registry: Registry) -> None:
    instance = registry.digest(INSTANCE)
    # Every stock image of the catalog seed is served under its repository path (what a node's mirror asks):
    # the instance image itself, or, for an image whose recorded command it lacks (Jupyter's
    # start-notebook.py), the instance image with that command's stand-in on top.
    instance_layers: list[object] = registry.manifest(INSTANCE)["layers"]  # type: ignore[assignment]
    for _slug, _name, reference, command in IMAGES:
        path = reference.split("/", 1)[1]
        if not command:
            assert registry.digest(path) == instance, reference
            continue
        layers: list[object] = registry.manifest(path)["layers"]  # type: ignore[assignment]
        assert len(layers) == len(instance_layers) + 1 and layers[:-1] == instance_layers, reference
        members = registry.members(path)
        program = members[f"usr/local/bin/{command[0]}"]
        assert program.isfile() and program.mode == 0o755, reference


def test_tools_image_holds_only_the_sshd(registry: Registry) -> None:
    expected_tag = subprocess.run(
        ["sha256sum", str(registry.sshd)], capture_output=True, text=True, check=True
    ).stdout[:12]
    assert registry.tools_ref == f"{registry.addr}/gpucloud/instance-tools:{expected_tag}"
    assert registry.ref_file.read_text().strip() == registry.tools_ref
    ref = registry.tools_ref.split("/", 1)[1]
    assert registry.config(ref)["config"]["Entrypoint"] == ["/gpucloud-sshd"]  # type: ignore[index]
    members = registry.members(ref)
    assert list(members) == ["gpucloud-sshd"]
    sshd = members["gpucloud-sshd"]
    assert sshd.isfile() and sshd.mode == 0o755 and sshd.uid == 0 and sshd.gid == 0
    assert sshd.size == registry.sshd.stat().st_size


def test_tools_layer_refuses_a_dynamically_linked_binary(built: Built) -> None:
    result = bash('build_tools_layer "$1"', shutil.which("ls") or "/bin/ls")
    assert result.returncode != 0
    assert "dynamically linked" in result.stderr


def test_second_push_is_quick_and_changes_nothing(registry: Registry) -> None:
    before = {ref: registry.digest(ref) for ref in ("pause:3.10", INSTANCE, *ALIASES)}
    tools_ref, seconds = registry.push()
    print(f"second push: {seconds:.1f} s")
    assert tools_ref == registry.tools_ref
    assert {ref: registry.digest(ref) for ref in before} == before
    assert seconds < 60


def test_start_registry_is_idempotent(registry: Registry) -> None:
    pid = (registry.state / "registry.pid").read_text().strip()
    out = bash('start_registry "$1" "$2" "$3"', registry.addr, str(registry.state), str(registry.logs))
    assert out.returncode == 0, out.stderr
    assert "already running" in out.stderr
    assert (registry.state / "registry.pid").read_text().strip() == pid


def test_start_registry_refuses_an_address_another_one_serves(registry: Registry, tmp_path: Path) -> None:
    other_state, other_logs = str(tmp_path / "state"), str(tmp_path / "logs")
    out = bash('start_registry "$1" "$2" "$3"', registry.addr, other_state, other_logs)
    assert out.returncode != 0
    assert "already answers" in out.stderr
    assert not (tmp_path / "state" / "registry.pid").exists()
    assert registry.digest("pause:3.10")  # the running one is untouched


def test_restart_keeps_blobs_but_not_manifests_and_stop_stops(built: Built, tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    state, logs = tmp_path / "state", tmp_path / "logs"
    ok('start_registry "$1" "$2" "$3"', addr, str(state), str(logs))
    try:
        reg = Registry(addr, state, logs, "", tmp_path / "ref", built.pause, built)
        ok('layer_of "$1" pause "$2" && crane_ append --oci-empty-base -f "$2" -t "$3/x:1"',
           str(built.pause), str(tmp_path / "layer.tar"), addr)  # fmt: skip
        assert reg.digest("x:1")
        pid = int((state / "registry.pid").read_text())
        ok('stop_registry "$1"', str(state))
        assert not (state / "registry.pid").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(addr.split(":")[1])), 1):
            pass
        ok('start_registry "$1" "$2" "$3"', addr, str(state), str(logs))
        # crane's registry keeps manifests in memory: after a restart the tag is gone, the blob is not.
        assert reg.crane("manifest", f"{addr}/x:1").returncode != 0
        assert any((state / "registry-blobs" / "sha256").iterdir())
    finally:
        bash('stop_registry "$1"', str(state))


def test_pause_exits_zero_on_sigterm_and_sigint(built: Built) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([str(built.pause)])
        time.sleep(0.3)
        assert proc.poll() is None, "pause must keep running until signalled"
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == 0, sig


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is PID, with their state letter (Z: a zombie nobody reaped)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found[int(entry.name)] = fields[0]
    return found


def test_pause_as_pid_1_reaps_orphans(built: Built) -> None:
    # PID 1 of a new PID namespace (we are root): bash leaves an orphan `sleep`, which the kernel re-parents
    # to PID 1, then becomes pause. The orphan must not stay a zombie once it exits.
    script = f'sh -c "sleep 1 & exit 0"; exec {built.pause}'
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", script])
    try:
        pause_pid = next(iter(wait_for(lambda: children(proc.pid), "unshare's child")))
        orphans = wait_for(lambda: children(pause_pid), "the orphan re-parented to pause")
        assert all(state != "Z" for state in orphans.values())
        time.sleep(1.5)  # the sleep has exited
        assert children(pause_pid) == {}, "pause left a zombie"
        os.kill(pause_pid, signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(probe: Callable[[], T], what: str, timeout: float = 5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := probe():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_instance_rootfs_uses_only_the_hosts_sources_for_its_suite(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main contrib\n"
        "deb http://b.example/debian-security bookworm-security main\n"
        "deb http://c.example/apt cloud-sdk-bookworm main\n"
        "deb-src http://a.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://d.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://e.example/node\nSuites: nodistro\nComponents: main\n"
    )
    (tmp_path / "sources.list.d" / "y.list.off").write_text("deb http://f.example/debian bookworm main\n")
    out = ok('APT_ETC="$1" host_debian_sources bookworm', str(tmp_path))
    paragraphs = [dict(line.split(": ", 1) for line in p.splitlines()) for p in out.split("\n\n")]
    assert {p.pop("Types") for p in paragraphs} == {"deb"}
    assert [(p.pop("URIs"), p.pop("Suites"), p.pop("Components")) for p in paragraphs] == [
        ("http://d.example/debian", "bookworm bookworm-updates", "main"),
        ("http://a.example/debian", "bookworm", "main contrib"),
        ("http://b.example/debian-security", "bookworm-security", "main"),
    ]
    assert paragraphs == [{}, {"Signed-By": "/k.gpg"}, {}]
