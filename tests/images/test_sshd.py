"""gpucloud-sshd, the SSH server every instance runs (images/sshd, docs/ssh-server.md).

The real binary on 127.0.0.1 and the real OpenSSH client: authentication, sessions, forwarding, the limits,
and its life as the container's PID 1 running the user's command.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.images.conftest import WAIT, Sshd, banner, keygen, ssh_argv
from tests.support.processes import free_port

# The binary comes from the sandbox's build (sandbox/build.sh gpucloud-sshd), like helm for tests/helm.
pytestmark = pytest.mark.sandbox

FALLBACK_HOME = "/tmp"  # noqa: S108 (the server's HOME when $HOME is unset or not writable, not a file we write)
SFTP_SERVERS = ["/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server", "/usr/libexec/sftp-server"]


# ---- authentication ------------------------------------------------------------------------------------


def test_exec_prints_output_and_returns_the_remote_exit_status(sshd: Sshd) -> None:
    result = sshd.ssh("echo out; echo err >&2; exit 3")

    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    log = sshd.log()
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{sshd.key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert 'accepted user "x" from 127.0.0.1:' in log
    assert fingerprint in log  # the fingerprint is logged, never the key itself
    assert Path(f"{sshd.key}.pub").read_text().split()[1] not in log


def test_stdin_reaches_the_command(sshd: Sshd) -> None:
    result = sshd.ssh("tr a-z A-Z", stdin="hello\n")

    assert (result.returncode, result.stdout) == (0, "HELLO\n"), result.stderr


def test_a_key_not_in_the_file_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")

    result = sshd.ssh("true", key=stranger)

    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    assert "auth refused" in sshd.log()


def test_a_key_removed_from_the_file_is_refused_without_a_restart(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other")
    assert sshd.ssh("true").returncode == 0

    sshd.authorized_keys.write_text(Path(f"{other}.pub").read_text())

    refused = sshd.ssh("true")
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr
    assert sshd.ssh("echo added", key=other).stdout == "added\n"  # the key added in the same write works


def test_password_and_keyboard_interactive_are_not_offered(sshd: Sshd) -> None:
    result = sshd.ssh("-o", "PreferredAuthentications=password,keyboard-interactive", "true")

    assert result.returncode == 255
    # The server lists the methods that can continue: only publickey.
    assert "Permission denied (publickey)." in result.stderr


# ---- sessions ------------------------------------------------------------------------------------------


def test_pty_request_gives_a_terminal_and_term(sshd: Sshd) -> None:
    result = subprocess.run(
        [*ssh_args(sshd), "-tt", "tty; echo TERM=$TERM"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TERM": "xterm-256color"},
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert "TERM=xterm-256color" in lines


def test_without_a_pty_the_command_has_no_terminal(sshd: Sshd) -> None:
    result = sshd.ssh("tty")

    assert result.returncode == 1  # tty(1): "not a tty"
    assert result.stdout == "not a tty\n"


def test_env_requests_are_accepted_except_ld_and_gpucloud_names(sshd: Sshd) -> None:
    result = sshd.ssh(
        "-o",
        "SetEnv=LD_PRELOAD=/tmp/evil.so GPUCLOUD_SSH_PORT=1 FOO=bar",
        'echo "[${LD_PRELOAD-unset}][${GPUCLOUD_SSH_PORT-unset}][$FOO]"',
    )

    assert result.stdout == "[unset][unset][bar]\n", result.stderr
    assert 'refused env "LD_PRELOAD"' in sshd.log()


def test_session_environment_names_the_login_and_the_connection(sshd: Sshd) -> None:
    result = sshd.ssh('echo "$USER $LOGNAME $HOME $(pwd)"; echo "$SSH_CONNECTION"; echo "$SSH_CLIENT"')

    lines = result.stdout.splitlines()
    home = os.environ.get("HOME", "")
    home = home if home and os.access(home, os.W_OK) else FALLBACK_HOME
    assert lines[0] == f"x x {home} {home}", result.stderr
    client_port = lines[1].split()[1]
    assert lines[1] == f"127.0.0.1 {client_port} 127.0.0.1 {sshd.port}"
    assert lines[2] == f"127.0.0.1 {client_port} {sshd.port}"


def test_the_exit_of_a_signalled_command_reaches_the_client(sshd: Sshd) -> None:
    # exit-signal: OpenSSH's client reports it as status 255 and says which signal.
    result = sshd.ssh("kill -TERM $$")

    assert result.returncode == 255


def test_sftp_uses_the_image_sftp_server_or_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    has_server = any(os.access(p, os.X_OK) for p in SFTP_SERVERS)
    (tmp_path / "upload.txt").write_text("sftp\n")
    result = subprocess.run(
        ["sftp", *sftp_args(sshd), "-b", "-", "x@127.0.0.1"],
        input=f"put {tmp_path / 'upload.txt'} {tmp_path / 'copied.txt'}\n",
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )

    if has_server:
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "copied.txt").read_text() == "sftp\n"
    else:
        assert result.returncode != 0
        assert "the image has no sftp-server" in sshd.log()


def test_orphans_of_a_session_are_reaped(sshd: Sshd) -> None:
    # The subshell exits at once, so the sleep is orphaned and handed to the server (PID 1 in a container, a
    # subreaper here), which must reap it when it exits instead of leaving a zombie.
    result = sshd.ssh("(sleep 0.2 &); echo started")
    assert result.stdout == "started\n"
    assert sshd.popen is not None

    time.sleep(1.0)

    assert zombie_children(sshd.popen.pid) == []


# ---- forwarding ----------------------------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 standing in for Jupyter: greets, then echoes one line."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"hello from the instance\n")
                conn.sendall(conn.makefile("rb").readline())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_direct_tcpip_reaches_a_local_service(sshd: Sshd, echo_server: int, host: str) -> None:
    # ssh -W opens the same direct-tcpip channel as ssh -L, with the connection on stdin/stdout.
    result = sshd.ssh("-W", f"{host}:{echo_server}", stdin="ping\n")

    assert result.stdout == "hello from the instance\nping\n", result.stderr


def test_direct_tcpip_to_a_non_loopback_address_is_refused(sshd: Sshd) -> None:
    result = sshd.ssh("-W", "192.0.2.1:80", stdin="")

    assert result.returncode == 255
    assert "stdio forwarding failed" in result.stderr
    # Refused by policy, not a dial that failed: the server never tried to connect.
    assert "refused forwarding for 127.0.0.1:" in sshd.log()
    assert "to 192.0.2.1:80 (only loopback)" in sshd.log()


def test_remote_forwarding_is_refused(sshd: Sshd) -> None:
    result = sshd.ssh("-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "true")

    assert result.returncode == 255
    assert "remote port forwarding failed" in result.stderr


# ---- limits --------------------------------------------------------------------------------------------


def test_connections_beyond_the_limit_are_closed_at_once(sshd: Sshd) -> None:
    held = []
    try:
        for _ in range(64):
            sock = socket.create_connection(("127.0.0.1", sshd.port), timeout=WAIT)
            held.append(sock)
            assert sock.makefile("rb").readline().startswith(b"SSH-2.0-")  # accepted and served

        assert banner(sshd.port, timeout=5) == b""  # the 65th: closed without a banner
        assert "64 connections open" in sshd.log()

        held.pop().close()
        deadline = time.monotonic() + WAIT
        while not banner(sshd.port).startswith(b"SSH-2.0-"):  # a freed slot is served again
            assert time.monotonic() < deadline, sshd.log()
            time.sleep(0.1)
    finally:
        for sock in held:
            sock.close()


# ---- run: PID 1 with the user's command ----------------------------------------------------------------


def test_run_exits_with_the_command_status_and_says_so(sshd_setup: Sshd) -> None:
    sshd_setup.start("--", "sh", "-c", "echo hi; exit 7")
    assert sshd_setup.popen is not None

    assert sshd_setup.popen.wait(WAIT) == 7
    assert sshd_setup.stdout_log.read_text() == "hi\n"
    assert "gpucloud-sshd: command exited with status 7\n" in sshd_setup.log()


def test_run_reports_a_command_killed_by_a_signal_as_128_plus_the_signal(sshd_setup: Sshd) -> None:
    sshd_setup.start("--", "sh", "-c", "kill -KILL $$")
    assert sshd_setup.popen is not None

    assert sshd_setup.popen.wait(WAIT) == 128 + signal.SIGKILL
    assert "gpucloud-sshd: command killed by signal 9" in sshd_setup.log()


def test_sigterm_reaches_the_command_and_both_stop(sshd_setup: Sshd) -> None:
    pidfile = sshd_setup.directory / "sleep.pid"
    script = f'trap "echo caught TERM; exit 5" TERM; sleep 300 & echo $! > {pidfile}; wait'
    sshd_setup.start("--", "sh", "-c", script)
    sshd_setup.wait_ready()  # the server runs beside the command
    assert sshd_setup.popen is not None
    wait_for(pidfile.exists)
    sleep_pid = int(pidfile.read_text())

    started = time.monotonic()
    sshd_setup.popen.send_signal(signal.SIGTERM)

    assert sshd_setup.popen.wait(WAIT) == 5  # the command's own handler ran and chose the status
    assert time.monotonic() - started < 5
    assert "caught TERM" in sshd_setup.stdout_log.read_text()
    wait_for(lambda: not alive(sleep_pid))  # its whole process group got the signal, not just the shell
    assert banner(sshd_setup.port) == b""  # the SSH server is gone too


def test_sigterm_without_a_command_stops_the_server(sshd: Sshd) -> None:
    assert sshd.popen is not None
    sshd.popen.send_signal(signal.SIGTERM)

    assert sshd.popen.wait(WAIT) == 0


def test_commands_over_ssh_run_as_the_server_uid(sshd_bin: Path, tmp_path: Path) -> None:
    # Run as uid 1000 with all capabilities gone (as in the pod) when the tests run as root; otherwise as the
    # test's own user. An unusable HOME falls back to /tmp.
    uid = 1000 if os.geteuid() == 0 else os.geteuid()
    shared = Path(tempfile.mkdtemp(prefix="gpucloud-sshd-"))  # traversable by uid 1000, unlike tmp_path
    try:
        shared.chmod(0o755)
        subprocess.run([str(sshd_bin), "install", str(shared)], check=True, timeout=WAIT)
        key = keygen(tmp_path / "id")
        (shared / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
        (shared / "hostkeys").mkdir()
        os.chown(shared / "hostkeys", uid, -1)
        server = Sshd(
            binary=shared / "gpucloud-sshd",
            directory=tmp_path,
            port=free_port(),
            key=key,
            authorized_keys=shared / "authorized_keys",
        )
        preexec = (
            ["setpriv", "--reuid", "1000", "--regid", "1000", "--clear-groups", "--inh-caps=-all"]
            if os.geteuid() == 0
            else []
        )
        server.start(
            "--host-key-dir",
            str(shared / "hostkeys"),
            preexec=preexec,
            env={**os.environ, "HOME": "/nonexistent"},
        )
        try:
            server.wait_ready()
            result = server.ssh('id -u; echo "$HOME"; pwd')
            assert result.stdout.splitlines() == [str(uid), FALLBACK_HOME, FALLBACK_HOME], result.stderr
            assert server.popen is not None
            assert os.stat(f"/proc/{server.popen.pid}").st_uid == uid
            key_file = shared / "hostkeys" / "ssh_host_ed25519_key"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # the generated host key, saved privately
        finally:
            server.stop()
    finally:
        subprocess.run(["rm", "-rf", str(shared)], check=False)


def test_a_saved_host_key_is_used_again(sshd_setup: Sshd) -> None:
    sshd_setup.start()
    sshd_setup.wait_ready()
    first = host_key(sshd_setup.port)
    sshd_setup.stop()

    sshd_setup.start()
    sshd_setup.wait_ready()

    assert host_key(sshd_setup.port) == first


# ---- probe and install ---------------------------------------------------------------------------------


def test_probe_succeeds_against_a_running_server(sshd: Sshd) -> None:
    result = subprocess.run(
        [str(sshd.binary), "probe", "--port", str(sshd.port)], capture_output=True, timeout=WAIT, check=False
    )

    assert result.returncode == 0


def test_probe_fails_against_a_closed_port(sshd_bin: Path) -> None:
    result = subprocess.run(
        [str(sshd_bin), "probe", "--port", str(free_port())], capture_output=True, timeout=WAIT, check=False
    )

    assert result.returncode == 1


def test_probe_fails_against_a_server_that_is_not_ssh(sshd_bin: Path, echo_server: int) -> None:
    result = subprocess.run(
        [str(sshd_bin), "probe", "--port", str(echo_server)], capture_output=True, timeout=WAIT, check=False
    )

    assert result.returncode == 1


def test_install_copies_an_executable_copy_of_itself(sshd_bin: Path, tmp_path: Path) -> None:
    # The pod's emptyDir starts empty: the target directory (the operator names /gpucloud/bin) does not exist.
    target = tmp_path / "bin"
    result = subprocess.run(
        [str(sshd_bin), "install", str(target)], capture_output=True, text=True, timeout=WAIT, check=False
    )

    assert result.returncode == 0, result.stderr
    copied = target / "gpucloud-sshd"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o755
    assert copied.read_bytes() == sshd_bin.read_bytes()
    assert sorted(p.name for p in target.iterdir()) == ["gpucloud-sshd"]  # no temporary file left
    probe = subprocess.run([str(copied), "probe", "--port", str(free_port())], timeout=WAIT, check=False)
    assert probe.returncode == 1  # it runs, and it is this program


# ---- helpers -------------------------------------------------------------------------------------------


def ssh_args(sshd: Sshd) -> list[str]:
    return ssh_argv(sshd.port, sshd.key)


def sftp_args(sshd: Sshd) -> list[str]:
    return [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        str(sshd.key),
        "-P",
        str(sshd.port),
    ]


def host_key(port: int) -> str:
    result = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    return result.stdout.split()[-1]


def zombie_children(pid: int) -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == pid and state == "Z":
            zombies.append(int(entry.name))
    return zombies


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
