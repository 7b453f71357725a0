"""Proof on real nodes (docs/instances.md "Proof on real nodes"): instances launched through the `gpucloud`
command onto the sandbox's real kubelet nodes (sandbox/realnodes.sh), used as a customer uses them.

Nothing is faked: the pod runs in containerd on a real node, the platform's SSH server answers through
kube-proxy's NodePort at the address the API gives, `gpucloud ssh` execs this machine's OpenSSH client, and
the log is the container's own. The keys are made with ssh-keygen in the test's temporary directory and
passed with -i; known hosts go to /dev/null (nothing is written to ~/.ssh).

Real nodes are few (two CPUs each, so two instances a node, shared with the other real-node tests): run
these under `flock /tmp/gpucloud-real-nodes.lock`. Waits are bounds for a hung cluster, not performance
assertions.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from apps.operator import names
from apps.tenants.roles import Role
from tests.cli.conftest import Cli, Result
from tests.conftest import Actor
from tests.console.helpers import client_for, page
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import wait_for
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "us-east-1"
WAIT = "5m"  # `--wait --timeout`: image pull, scheduling and readiness on a real node take seconds
LOG_TIMEOUT = 60.0  # seconds for a line the container printed to reach its log
# `gpucloud ssh NAME -- <these> COMMAND`: OpenSSH takes options after the destination. Only the given key
# (no agent, no default keys), no prompt. The host key is checked strictly: `gpucloud ssh` writes the API's
# known_hosts line into a file of its own (under the test's HOME), so a server presenting any other host key
# than the instance's fails every SSH call here.
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
)  # fmt: skip


def keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A fresh ed25519 key pair (private key mode 0600, as ssh requires): (private, public)."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(private)],
        check=True,
        timeout=30,
    )
    return private, private.with_suffix(".pub")


def ssh(cli: Cli, instance: str, key: Path, command: str) -> Result:
    """`gpucloud ssh INSTANCE -- -i KEY ... COMMAND`: the API's ssh command with this key and command."""
    return cli("ssh", instance, "--", "-i", str(key), *SSH_OPTIONS, command)


def real_nodes(sandbox: Sandbox, region: str = REGION) -> list[str]:
    nodes = [n["name"] for n in sandbox.real_nodes.get("nodes", []) if n["region"] == region]
    assert len(nodes) >= 2, f"the sandbox has no two real nodes in {region}: {sandbox.real_nodes}"
    return nodes


def pod_of(kube: client.ApiClient, actor: Actor, instance_id: str) -> client.V1Pod:
    namespace = names.namespace_name(actor.tenant.pk, actor.tenant.slug)
    return client.CoreV1Api(kube).read_namespaced_pod(names.instance_object_name(instance_id), namespace)


def launch(cli: Cli, name: str, key_name: str, *extra: str, image: str = "cuda-12") -> dict[str, Any]:
    launched = cli.ok(
        "launch", "--name", name, "--region", REGION, "--type", "sandbox-cpu-1x", "--image", image,
        "--ssh-key", key_name, *extra, "--wait", "--timeout", WAIT, "--json",
    )  # fmt: skip
    instance: dict[str, Any] = launched.json()
    assert instance["state"] == "running", str(launched)
    return instance


@pytest.fixture
def user_key(cli: Cli, funded: Actor, tmp_path: Path) -> Path:
    """The funded tenant's CLI logged in, with a key pair registered as `laptop`; the private key."""
    cli.login(funded)
    private, public = keypair(tmp_path / "keys", "laptop")
    cli.ok("ssh-keys", "add", "laptop", "--public-key-file", str(public))
    return private


def test_launch_and_ssh_on_a_real_node_with_the_tenants_key_only(
    cli: Cli,
    user_key: Path,
    funded: Actor,
    make_actor: Callable[..., Actor],
    live_region: Catalog,
    sandbox: Sandbox,
    kube_clients: dict[str, client.ApiClient],
    tmp_path: Path,
) -> None:
    instance = launch(cli, "real-ssh", "laptop")
    pod = pod_of(kube_clients[REGION], funded, instance["id"])
    assert pod.spec.node_name in real_nodes(sandbox)
    node_address = next(n["address"] for n in sandbox.real_nodes["nodes"] if n["name"] == pod.spec.node_name)
    assert instance["connection"]["ssh_command"].endswith(f"gpucloud@{node_address}")

    uname = ssh(cli, "real-ssh", user_key, "uname -a")
    assert uname.returncode == 0, str(uname)
    assert uname.stdout.startswith(f"Linux {pod.metadata.name} "), str(uname)  # the container's hostname
    who = ssh(cli, "real-ssh", user_key, 'id -u; echo "$HOME"; cat /etc/debian_version')
    assert who.returncode == 0, str(who)
    uid, home, debian = who.stdout.splitlines()
    assert (uid, home) == ("1000", "/home/gpucloud") and debian[:1].isdigit(), str(who)

    # Another tenant's key, registered in that tenant: not injected into this tenant's instance.
    stranger = make_actor(Role.OWNER)
    stranger_cli = Cli(home=tmp_path / "stranger-home", api_url=cli.api_url)
    stranger_cli.home.mkdir()
    stranger_cli.login(stranger)
    stranger_key, stranger_public = keypair(tmp_path / "stranger-keys", "stranger")
    stranger_cli.ok("ssh-keys", "add", "stranger", "--public-key-file", str(stranger_public))
    assert stranger_cli("ssh", instance["id"]).returncode == 4  # not found: nor does their CLI see it
    wrong_key, _ = keypair(tmp_path / "keys", "never-registered")
    for key in (stranger_key, wrong_key):
        refused = ssh(cli, "real-ssh", key, "uname -a")
        assert refused.returncode == 255, str(refused)
        assert "Permission denied" in refused.stderr and "Linux" not in refused.stdout, str(refused)


def test_the_containers_log_reaches_the_cli_the_api_and_the_console(
    cli: Cli,
    user_key: Path,
    funded: Actor,
    make_actor: Callable[..., Actor],
    live_region: Catalog,
    server: str,
) -> None:
    marker = f"real-node-marker-{uuid.uuid4().hex[:8]}"
    instance = launch(cli, "real-logs", "laptop", "--command", f"sh -c 'echo {marker}; exec sleep 3600'")

    def cli_log() -> list[str]:
        lines = cli.ok("logs", "real-logs").stdout.splitlines()
        return lines if marker in lines else []

    lines = wait_for(cli_log, timeout=LOG_TIMEOUT, what=f"{marker!r} in `gpucloud logs real-logs`")
    # The platform's SSH server (images/sshd) and the user's command share the container's stdout/stderr.
    assert any(line.startswith("gpucloud-sshd: listening on ") for line in lines), lines

    tail = cli.ok("logs", "real-logs", "--tail", "1")
    assert len(tail.stdout.splitlines()) == 1, str(tail)
    assert tail.stdout.splitlines()[0] in cli.ok("logs", "real-logs").stdout.splitlines(), str(tail)

    url = f"{server}/api/v1/tenants/{funded.tenant.slug}/instances/{instance['id']}/logs"
    answer = requests.get(url, headers={"Authorization": f"Bearer {funded.token_plaintext}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    log = answer.json()
    assert log["available"] is True and log["reason"] is None and marker in log["lines"], log
    assert log["last_timestamp"], log
    recent = requests.get(
        url,
        params={"since": "3600", "tail": "1000"},
        headers={"Authorization": f"Bearer {funded.token_plaintext}"},
        timeout=60,
    )
    assert recent.status_code == 200 and marker in recent.json()["lines"], recent.text
    stranger = make_actor(Role.OWNER)
    hidden = requests.get(url, headers={"Authorization": f"Bearer {stranger.token_plaintext}"}, timeout=60)
    assert hidden.status_code == 404, hidden.text

    console = client_for(funded.user).get(page("instance_logs", funded.tenant, instance["id"]))
    assert console.status_code == 200
    html = console.content.decode()
    assert marker in html and "No logs yet." not in html


def test_a_volume_keeps_its_file_across_stop_and_start_on_another_real_node(
    cli: Cli,
    user_key: Path,
    funded: Actor,
    live_region: Catalog,
    sandbox: Sandbox,
    kube_clients: dict[str, client.ApiClient],
) -> None:
    core = client.CoreV1Api(kube_clients[REGION])
    cli.ok("volumes", "create", "real-data", "--region", REGION, "--size", "1")

    def available() -> bool:
        volumes = cli.ok("volumes", "ls", "--json").json()
        return [(v["name"], v["state"]) for v in volumes] == [("real-data", "available")]

    wait_for(available, timeout=LOG_TIMEOUT, what="volume real-data to be available (its claim bound)")
    instance = launch(cli, "real-vol", "laptop", "--volume", "real-data:/mnt/data")
    first = pod_of(kube_clients[REGION], funded, instance["id"]).spec.node_name
    assert first in real_nodes(sandbox)
    (other,) = [n for n in real_nodes(sandbox) if n != first]
    data = f"data-{uuid.uuid4().hex[:8]}"
    wrote = ssh(cli, "real-vol", user_key, f"echo {data} > /mnt/data/f && sync && cat /mnt/data/f")
    assert wrote.returncode == 0 and wrote.stdout.strip() == data, str(wrote)

    core.patch_node(first, {"spec": {"unschedulable": True}})
    try:
        assert cli.ok("stop", "real-vol", "--wait", "--timeout", WAIT).stdout.strip() == "real-vol: stopped"
        assert cli.ok("start", "real-vol", "--wait", "--timeout", WAIT).stdout.strip() == "real-vol: running"
        assert pod_of(kube_clients[REGION], funded, instance["id"]).spec.node_name == other
        # A new pod on another node, and still the instance's own host key (checked by the ssh below too).
        again = cli.ok("show", "real-vol", "--json").json()["connection"]
        assert again["host_key"] == instance["connection"]["host_key"]
        read = ssh(cli, "real-vol", user_key, "cat /mnt/data/f")
        assert read.returncode == 0 and read.stdout.strip() == data, str(read)
    finally:
        core.patch_node(first, {"spec": {"unschedulable": False}})


def test_a_stock_image_runs_its_own_command_reached_through_an_ssh_tunnel(
    cli: Cli, user_key: Path, funded: Actor, live_region: Catalog, tmp_path: Path
) -> None:
    """The catalog's Jupyter image, launched unmodified and with no command: its own command (the catalog's
    record, start-notebook.py) runs under the platform's SSH server, listening on the instance's 127.0.0.1,
    and `ssh -L` through that server reaches it, as a user opens a notebook."""
    instance = launch(cli, "real-nb", "laptop", image="jupyter")
    assert instance["command"][0] == "start-notebook.py"

    def serving() -> bool:
        return "notebook stand-in serving on http://127.0.0.1:8888/" in cli.ok("logs", "real-nb").stdout

    wait_for(serving, timeout=LOG_TIMEOUT, what="the notebook server's line in the instance's log")
    local = free_port()
    argv = shlex.split(cli.ok("ssh", "--print", "real-nb").stdout.strip())
    tunnel = subprocess.Popen(
        [*argv, "-i", str(user_key), *SSH_OPTIONS, "-o", "ExitOnForwardFailure=yes", "-N",
         "-L", f"127.0.0.1:{local}:127.0.0.1:8888"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HOME": str(cli.home)},
    )  # fmt: skip
    try:

        def page_through_tunnel() -> str:
            try:
                return requests.get(f"http://127.0.0.1:{local}/", timeout=5).text
            except requests.RequestException:
                return ""

        assert "stand-in for the Jupyter notebook server" in wait_for(
            page_through_tunnel, timeout=LOG_TIMEOUT, what="the tunnel"
        )
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=30)
