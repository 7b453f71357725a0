"""Proof on real nodes (issue 19): isolation and failure of instances whose containers really run.

The sandbox's real kubelet nodes (sandbox/realnodes.sh: containerd, kube-proxy and kube-network-policies in
a network namespace each) run these instances, type sandbox-cpu-1x (1 vCPU, 1 GiB, schedules only there).
Launches go through the REST API; the reconciler is driven in a loop as in the other sandbox tests
(tests/operator/sandbox_support.py). Commands inside an instance run with `kubectl exec` as the
administrator (kubernetes.stream); reachability is `nc -z -w 3 HOST PORT` from inside the pod, so a packet
the policy drops shows as a timeout, with the exit status telling. Nothing is mocked: packets are dropped by
the real NetworkPolicy enforcer, exit codes come from the kubelet, the OOM kill from the kernel.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from django.test import TestCase
from kubernetes import client
from kubernetes.stream import stream

from apps.accounts import services as account_services
from apps.instances import timers
from apps.instances.models import Instance, InstanceEvent
from apps.operator import names
from apps.operator.manifests import CONTAINER
from apps.tenants.roles import Role
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for

pytestmark = pytest.mark.django_db

REGION = "us-east-1"
INSTANCE_TYPE = "sandbox-cpu-1x"
SSH_PORT = 2222
KUBELET_PORT = 10250
REAL_TIMEOUT = 240.0  # seconds: a first image pull on a real node; a bound, not a performance assertion
CRASH_TIMEOUT = 180.0
SSH_OPTIONS = ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes"]


@pytest.fixture
def make_tenant(
    sandbox: Sandbox,
    kube_clients: dict[str, client.ApiClient],
    catalog: Catalog,
    make_actor: Callable[..., Any],
) -> Iterator[Callable[[], SandboxTenant]]:
    assert sandbox.real_nodes.get("nodes"), "the sandbox instance runs no real nodes (sandbox/realnodes.sh)"
    connect(catalog.us_east, sandbox)
    made: list[SandboxTenant] = []

    def make() -> SandboxTenant:
        tenant = SandboxTenant(actor=make_actor(Role.OWNER), kube_clients=kube_clients)
        tenant.regions.add(REGION)
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        tenant.cleanup()


def _real_nodes(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in sandbox.real_nodes["nodes"] if n["region"] == REGION}


def _launch_running(tenant: SandboxTenant, **body: Any) -> tuple[Instance, client.V1Pod]:
    launched = tenant.launch(region=REGION, instance_type=INSTANCE_TYPE, image="pytorch", **body)
    instance = drive(launched["id"], state_is("running"), what="running", timeout=REAL_TIMEOUT)
    pod = tenant.read_pod(launched["id"])
    assert pod is not None and pod.status.pod_ip
    return instance, pod


def _exec(tenant: SandboxTenant, pod: client.V1Pod, script: str) -> str:
    """Runs `sh -c script` in the instance's container (as its user, uid 1000) and returns its output."""
    output: str = stream(
        tenant.core().connect_get_namespaced_pod_exec,
        pod.metadata.name,
        pod.metadata.namespace,
        container=CONTAINER,
        command=["sh", "-c", script],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _request_timeout=120,
    )
    return output


def _reachable(tenant: SandboxTenant, pod: client.V1Pod, targets: list[tuple[str, int]]) -> dict[str, bool]:
    """From inside the pod, whether a TCP connection to each target opens within 3 s (`nc -z`)."""
    script = "; ".join(
        f'nc -z -w 3 {host} {port} 2>/dev/null; echo "{host}:{port}=$?"' for host, port in targets
    )
    output = _exec(tenant, pod, script)
    found = dict(line.split("=", 1) for line in output.split() if "=" in line)
    assert set(found) == {f"{h}:{p}" for h, p in targets}, output
    return {target: code == "0" for target, code in found.items()}


def _set_unschedulable(core: client.CoreV1Api, node: str, unschedulable: bool) -> None:
    core.patch_node(node, {"spec": {"unschedulable": unschedulable}})


class InternetServer:
    """A TCP server in the internet stand-in's network namespace (a documentation address, not private):
    `python3 -m http.server` bound to that address only."""

    def __init__(self, netns: str, address: str, port: int):
        self.address, self.port = address, port
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", netns, "python3", "-m", "http.server", str(port), "--bind", address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._listening, what=f"the internet stand-in's server on {address}:{port}", timeout=30)

    def _listening(self) -> bool:
        assert self.process.poll() is None, f"the server on port {self.port} exited"
        try:  # the machine reaches the stand-in over the sandbox bridge
            socket.create_connection((self.address, self.port), timeout=2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def internet(sandbox: Sandbox) -> Iterator[Callable[[int], InternetServer]]:
    servers: list[InternetServer] = []

    def serve(port: int) -> InternetServer:
        inet = sandbox.real_nodes["internet"]
        servers.append(InternetServer(inet["netns"], inet["address"], port))
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


def _ssh_key(tenant: SandboxTenant, directory: Path) -> tuple[str, Path]:
    """A fresh ed25519 key registered with the tenant: (its id, the private key file for ssh -i)."""
    private = ed25519.Ed25519PrivateKey.generate()
    path = directory / f"id_{tenant.actor.tenant.slug}"
    path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    os.chmod(path, 0o600)
    public = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    key = account_services.ssh_key_create(
        actor=tenant.actor.user, tenant=tenant.actor.tenant, name="proof", public_key=f"{public} proof"
    )
    return str(key.pk), path


def _ssh(key: Path, host: str, port: int, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(port),
            *SSH_OPTIONS,
            "-o",
            "ConnectTimeout=10",
            f"u@{host}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_network_policy_drops_real_packets(
    make_tenant: Callable[[], SandboxTenant],
    sandbox: Sandbox,
    internet: Callable[[int], InternetServer],
    tmp_path: Path,
) -> None:
    nodes = _real_nodes(sandbox)
    assert len(nodes) >= 2, nodes
    tenant_a, tenant_b = make_tenant(), make_tenant()
    admin = tenant_a.core()

    # A first; then one B instance on A's node and one on the other (the other node cordoned in turn), so
    # both the same-node path (the node's bridge) and the cross-node one (through the machine) are covered.
    _, pod_a = _launch_running(tenant_a)
    node_a = pod_a.spec.node_name
    other = next(name for name in nodes if name != node_a)
    key_id, key_b = _ssh_key(tenant_b, tmp_path)
    try:
        _set_unschedulable(admin, other, True)
        _, pod_b_same = _launch_running(tenant_b, ssh_key_ids=[key_id])
        _set_unschedulable(admin, other, False)
        _set_unschedulable(admin, node_a, True)
        _, pod_b_cross = _launch_running(tenant_b, ssh_key_ids=[key_id])
    finally:
        _set_unschedulable(admin, other, False)
        _set_unschedulable(admin, node_a, False)
    assert (pod_b_same.spec.node_name, pod_b_cross.spec.node_name) == (node_a, other)

    allowed = internet(8080)
    smtp = internet(25)
    apiserver_port = urlparse(sandbox.servers[REGION]).port
    assert apiserver_port
    blocked = {
        "B's SSH port, same node": (pod_b_same.status.pod_ip, SSH_PORT),
        "B's SSH port, other node": (pod_b_cross.status.pod_ip, SSH_PORT),
        "the apiserver on the machine": (sandbox.real_nodes["host_address"], apiserver_port),
        "the kubernetes Service": ("10.0.0.1", 443),
        "cloud metadata": ("169.254.169.254", 80),
        "the kubelet of A's node": (nodes[node_a]["address"], KUBELET_PORT),
        "the kubelet of the other node": (nodes[other]["address"], KUBELET_PORT),
        "SMTP on the internet": (smtp.address, smtp.port),
    }
    control = (allowed.address, allowed.port)

    seen = _reachable(tenant_a, pod_a, [control, *blocked.values()])
    # The control: the network works and the policy lets the internet through on an allowed port.
    assert seen[f"{control[0]}:{control[1]}"], seen
    opened = [what for what, (host, port) in blocked.items() if seen[f"{host}:{port}"]]
    assert opened == [], f"tenant A's instance reached {opened}"

    # B's server does answer on its pod IP and SSH port, to what the policy admits: SSH ingress from outside
    # the tenant (here the machine), with B's key.
    for pod_b in (pod_b_same, pod_b_cross):
        result = _ssh(key_b, pod_b.status.pod_ip, SSH_PORT, "echo instance-$GPUCLOUD_INSTANCE_ID")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"instance-{pod_b.metadata.labels[names.INSTANCE_LABEL]}"

    # Without tenant A's NetworkPolicies the same packets get through: what dropped them was the policy
    # (the enforcer follows the deletion within seconds). The rest stay unreachable for other reasons in
    # the sandbox as well (see docs/operator-objects.md "NetworkPolicy on real nodes").
    tenant_a.net().delete_collection_namespaced_network_policy(tenant_a.namespace)
    policy_only = {
        what: blocked[what]
        for what in (
            "B's SSH port, same node",
            "B's SSH port, other node",
            "the kubelet of the other node",
            "SMTP on the internet",
        )
    }

    def all_open() -> bool:
        now_seen = _reachable(tenant_a, pod_a, list(policy_only.values()))
        return all(now_seen.values())

    wait_for(all_open, what="tenant A's connections to open without its NetworkPolicies", timeout=60)


def _last_terminated(pod: client.V1Pod | None) -> client.V1ContainerStateTerminated | None:
    for status in (pod.status.container_statuses if pod and pod.status else None) or []:
        if status.name == CONTAINER and status.last_state and status.last_state.terminated:
            terminated: client.V1ContainerStateTerminated = status.last_state.terminated
            return terminated
    return None


def test_a_crashing_command_fails_the_instance_with_its_exit_code(
    make_tenant: Callable[[], SandboxTenant],
) -> None:
    tenant = make_tenant()
    launched = tenant.launch(
        region=REGION, instance_type=INSTANCE_TYPE, image="pytorch", command=["sh", "-c", "echo boom; exit 3"]
    )
    failed = drive(launched["id"], state_is("failed"), what="failed", timeout=CRASH_TIMEOUT)

    # The kubelet's own report: the container exited 3 and waits in CrashLoopBackOff.
    pod = tenant.read_pod(launched["id"])
    if pod is not None:  # the reconciler deletes a failed instance's pod; if it is still there, it agrees
        terminated = _last_terminated(pod)
        assert terminated is not None and terminated.exit_code == 3
    assert failed.failure_reason == "crash_loop"
    assert failed.state_message.startswith("CrashLoopBackOff: the container exited with code 3 (Error)")
    event = InstanceEvent.objects.get(instance_id=failed.pk, name="failed")
    assert (event.reason, event.to_state) == ("crash_loop", "failed")
    assert "exited with code 3" in event.message
    detail = tenant.detail(launched["id"])
    assert (detail["state"], detail["failure_reason"]) == ("failed", "crash_loop")
    assert "exited with code 3" in detail["state_message"]
    # The reconciler deletes a failed instance's pod (it holds a GPU); nothing of it stays billed.
    drive(launched["id"], lambda _: tenant.read_pod(launched["id"]) is None, what="without its pod")
    assert failed.billing_since is None


def test_a_crash_loop_nobody_observes_is_failed_by_the_ready_timeout(
    make_tenant: Callable[[], SandboxTenant], settings: Any
) -> None:
    """The ready timeout of the billing rules bounds a crashing instance too, even if the operator never saw
    its CrashLoopBackOff (its watch was down): the timer sweep fails it not_ready and its pod goes."""
    ready_timeout = 20
    settings.INSTANCE_READY_TIMEOUT_SECONDS = ready_timeout
    tenant = make_tenant()
    launched = tenant.launch(
        region=REGION,
        instance_type=INSTANCE_TYPE,
        image="pytorch",
        command=["sh", "-c", "sleep 4; echo boom; exit 3"],
    )
    # Observed once scheduled (provisioning), then left alone.
    drive(launched["id"], state_is("provisioning"), what="provisioning", timeout=CRASH_TIMEOUT)
    entered = time.monotonic()

    def crashed() -> bool:
        terminated = _last_terminated(tenant.read_pod(launched["id"]))
        return terminated is not None and terminated.exit_code == 3

    wait_for(crashed, what="the kubelet to report the crash (exit code 3)", timeout=CRASH_TIMEOUT)
    assert Instance.objects.get(pk=launched["id"]).state == "provisioning"
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert timers.enforce_timers() == 0  # not yet: the timeout has not passed
    time.sleep(max(0.0, ready_timeout + 1 - (time.monotonic() - entered)))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert timers.enforce_timers() == 1  # fails it, and queues the reconcile that deletes the pod
    failed = Instance.objects.get(pk=launched["id"])
    assert (failed.state, failed.failure_reason, failed.billing_since) == ("failed", "not_ready", None)
    assert f"did not become ready within {ready_timeout} s" in failed.state_message
    wait_for(lambda: tenant.read_pod(launched["id"]) is None, what="the pod to be deleted")


def test_a_process_past_the_memory_limit_is_oom_killed(make_tenant: Callable[[], SandboxTenant]) -> None:
    tenant = make_tenant()
    launched = tenant.launch(
        region=REGION,
        instance_type=INSTANCE_TYPE,
        image="pytorch",
        command=["python3", "-c", "b = bytearray(2 * 1024**3)"],
    )
    pod = tenant.read_pod(launched["id"])
    assert pod is not None
    assert pod.spec.containers[0].resources.limits["memory"] == "1Gi"

    def killed() -> client.V1ContainerStateTerminated | None:
        terminated = _last_terminated(tenant.read_pod(launched["id"]))
        return terminated if terminated is not None and terminated.reason == "OOMKilled" else None

    terminated = wait_for(killed, what="the kubelet to report OOMKilled", timeout=CRASH_TIMEOUT)
    assert terminated.exit_code == 137

    failed = drive(launched["id"], state_is("failed"), what="failed", timeout=CRASH_TIMEOUT)
    assert failed.failure_reason == "crash_loop"
    assert "OOMKilled (exit code 137)" in failed.state_message
    event = InstanceEvent.objects.get(instance_id=failed.pk, name="failed")
    assert "OOMKilled (exit code 137): it went past its memory limit" in event.message
