"""An instance's whole life through the `gpucloud` command against the live server and the sandbox."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from apps.instances.models import Instance, InstanceEvent
from tests.cli.conftest import Cli
from tests.conftest import Actor
from tests.instances.helpers import Catalog, ed25519_public_key

pytestmark = pytest.mark.django_db(transaction=True)


def fake_ssh(directory: Path) -> Path:
    """An `ssh` on PATH that records its arguments: `gpucloud ssh` must exec it with the API's command."""
    directory.mkdir()
    record = directory / "argv"
    script = directory / "ssh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit 0\n')
    script.chmod(0o755)
    return record


def test_login_launch_wait_ls_ssh_stop_start_restart_terminate(
    cli: Cli, funded: Actor, live_region: Catalog, tmp_path: Path
) -> None:
    login = cli.login(funded)
    assert f"tenant {funded.tenant.slug}" in login.stderr
    mode = cli.config_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert funded.token_plaintext in cli.config_file.read_text()

    key_file = tmp_path / "id_ed25519.pub"
    key_file.write_text(ed25519_public_key("cli@test") + "\n")
    cli.ok("ssh-keys", "add", "laptop", "--public-key-file", str(key_file))

    launched = cli.ok(
        "launch", "--name", "cli-train", "--region", "us-east-1", "--type", "gpu-h100x1",
        "--image", "pytorch", "--ssh-key", "laptop", "--auto-stop", "2h", "--wait", "--json",
    )  # fmt: skip
    instance = launched.json()
    assert instance["state"] == "running"
    assert instance["auto_stop_after"] == 7200
    assert len(instance["ssh_key_ids"]) == 1
    assert Instance.objects.get(pk=instance["id"]).state == "running"

    table = cli.ok("ls").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATE", "TYPE", "REGION", "PRICE/H", "COST", "UPTIME"]
    row = next(line for line in table[1:] if "cli-train" in line)
    assert row.split()[:5] == [instance["id"], "cli-train", "running", "gpu-h100x1", "us-east-1"]
    listed = cli.ok("ls", "--json").json()
    assert [(i["id"], i["state"]) for i in listed] == [(instance["id"], "running")]

    shown = cli.ok("show", "cli-train").stdout
    assert "state:" in shown and "running" in shown

    ssh_command = instance["connection"]["ssh_command"]
    record = fake_ssh(tmp_path / "bin")
    cli.ok(
        "ssh", "cli-train", "--", "-o", "StrictHostKeyChecking=no", PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin"
    )
    attempts = ["-o", "ConnectionAttempts=10"]  # a refused connection is retried while kube-proxy catches up
    assert record.read_text().split("\n")[:-1] == [
        *attempts,
        *ssh_command.split()[1:],
        "-o",
        "StrictHostKeyChecking=no",
    ]
    # Without host key options of the user's own, the API's known_hosts line is checked strictly, from a file
    # of the CLI's (the user's ~/.ssh/known_hosts is not touched).
    known_hosts = cli.home / ".config" / "gpucloud" / "known_hosts"
    cli.ok("ssh", "cli-train", "--", "true", PATH=f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert record.read_text().split("\n")[:-1] == [
        *attempts, "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        *ssh_command.split()[1:], "true",
    ]  # fmt: skip
    assert known_hosts.read_text() == instance["connection"]["known_hosts"] + "\n"
    assert instance["connection"]["known_hosts"].endswith(" " + instance["connection"]["host_key"])

    stopped = cli.ok("stop", "cli-train", "--wait", "--json").json()
    assert stopped["state"] == "stopped"
    assert "stopped" in cli.ok("show", instance["id"]).stdout

    started = cli.ok("start", instance["id"], "--wait")
    assert started.stdout.strip() == "cli-train: running"
    running_since = Instance.objects.get(pk=instance["id"]).running_since
    assert running_since is not None

    restarted = cli.ok("restart", "cli-train", "--wait", "--json").json()
    assert restarted["state"] == "running" and restarted["connection"]["ssh_command"].startswith("ssh -p ")
    again = Instance.objects.get(pk=instance["id"])
    assert (
        again.state == "running" and again.running_since is not None and again.running_since > running_since
    )
    changes = InstanceEvent.objects.filter(instance_id=instance["id"], kind__in=["action", "observation"])
    timeline = changes.exclude(name="connection_changed").order_by("created_at", "id")
    assert [(e.kind, e.name, e.from_state, e.to_state) for e in timeline][-3:] == [
        ("action", "restart", "running", "starting"),  # the pod replaced ...
        ("observation", "pod_started", "starting", "starting"),  # ... the new one started (billed again)
        ("observation", "pod_ready", "starting", "running"),  # ... and ready
    ]

    terminated = cli.ok("terminate", "cli-train", "--wait", "--json").json()
    assert terminated["state"] == "terminated"
    assert Instance.objects.get(pk=instance["id"]).state == "terminated"
    assert cli.ok("ls").stdout.strip() == "No instances."
    everything: list[dict[str, Any]] = cli.ok("ls", "--all", "--json").json()
    assert [(i["name"], i["state"]) for i in everything] == [("cli-train", "terminated")]
