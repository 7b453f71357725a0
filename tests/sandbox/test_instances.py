"""Sandbox instances: the tests run on an instance of their own (`test`), never on make run's (`default`).

The issue this guards against: after `make run`, the demo's instances held pods on every H100 node of the
one shared sandbox, and the capacity test found no free 8-GPU node. Here make run's instance is filled
(the demo seeded as `make run` seeds it, an 8-GPU instance launched through the API, the remaining H100
nodes taken), and the capacity test still passes on the test instance. make run's instance is reused when it
runs (a developer's demo) and otherwise started for this module and stopped again; everything made in it is
deleted. GPUCLOUD_SANDBOX_RUN_INSTANCE names another instance to play make run's (default `default`).

A session alone on the test instance clears what an aborted session left; `sandbox.sh reset` waits for
running sessions and restarts the instance empty. Those two are proved on a short-lived instance,
`scratch` (one region), so that clearing never touches the sessions that share the test instance.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.accounts.models import User
from apps.catalog import sandbox_paths
from apps.catalog.models import Region
from apps.tenants.models import Membership, Tenant
from tests.conftest import Actor
from tests.factories import make_token
from tests.fixtures.kube import (
    SANDBOX_SH,
    SYSTEM_NAMESPACES,
    Instance,
    Sandbox,
    create_namespace,
    delete_namespace,
    open_session,
    wait_until,
)
from tests.operator.own_nodes import Nodes
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is
from tests.operator.test_capacity_sandbox import assert_capacity_rows_follow_the_cluster

pytestmark = pytest.mark.sandbox  # the scratch instance is a sandbox of its own, without the fixture

RUN_INSTANCE = os.environ.get("GPUCLOUD_SANDBOX_RUN_INSTANCE", sandbox_paths.DEFAULT_INSTANCE)
REGION = "us-east-1"
H100 = "NVIDIA-H100-80GB-HBM3"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
GONE_TIMEOUT = 120.0  # seconds for a deleted namespace to go (about 11 s in the sandbox)


# --- helpers ---------------------------------------------------------------------------------------------


def free_gpus_by_node(core: client.CoreV1Api) -> dict[str, int]:
    """H100 node -> GPUs that no scheduled, unfinished pod requests (schedulable nodes only)."""
    free = {
        n.metadata.name: int(n.status.allocatable.get("nvidia.com/gpu", "0"))
        for n in core.list_node(label_selector=f"nvidia.com/gpu.product={H100}").items
        if not n.spec.unschedulable
    }
    for pod in core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items:
        if pod.spec.node_name in free and pod.status.phase not in ("Succeeded", "Failed"):
            for container in pod.spec.containers:
                requests = (container.resources and container.resources.requests) or {}
                free[pod.spec.node_name] -= int(requests.get("nvidia.com/gpu", 0))
    return free


def whole_free_nodes(core: client.CoreV1Api) -> list[str]:
    return sorted(name for name, gpus in free_gpus_by_node(core).items() if gpus >= 8)


def eight_gpu_pod(name: str, node: str | None = None) -> dict[str, Any]:
    selector = {"nvidia.com/gpu.product": H100, **({"kubernetes.io/hostname": node} if node else {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": selector,
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "8"}}}
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }


def pod_running(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    return core.read_namespaced_pod(name, namespace).status.phase == "Running"


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def region_server(region: Region) -> str:
    return yaml.safe_load(region.get_kubeconfig())["clusters"][0]["cluster"]["server"]


# --- make run's instance, full -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_sandbox(sandbox: Sandbox) -> Iterator[Sandbox]:
    """make run's instance, running: reused as it is when it runs, else started here (us-east-1 alone,
    all this module needs) and stopped after."""
    instance = Instance.named(RUN_INSTANCE)
    assert instance.dir != sandbox.dir, f"the run instance {RUN_INSTANCE} is the session's own"
    if instance.is_running():
        yield Sandbox.load(instance.dir)
        return
    try:
        started = instance.start(GPUCLOUD_SANDBOX_REGIONS=REGION)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield started
    finally:
        instance.stop()


def demo_owner() -> Actor:
    """The owner of the demo tenant seed_demo made, with a token of our own (seed_demo prints its token)."""
    user = User.objects.get(email="demo@gpucloud.localhost")
    tenant = Tenant.objects.get(slug="demo")
    token, plaintext = make_token(user=user, tenant=tenant)
    return Actor(
        user=user,
        tenant=tenant,
        membership=Membership.objects.get(tenant=tenant, user=user),
        token=token,
        token_plaintext=plaintext,
    )


@pytest.mark.django_db(transaction=True)
def test_the_tests_have_their_own_instance(sandbox: Sandbox, run_sandbox: Sandbox) -> None:
    assert sandbox.instance == Instance.of_session().name != sandbox_paths.DEFAULT_INSTANCE
    assert sandbox.dir != run_sandbox.dir
    assert REGION in sandbox.servers and REGION in run_sandbox.servers
    assert not set(sandbox.servers.values()) & set(run_sandbox.servers.values())  # other apiservers
    # sandbox.sh and the Python side (seed_catalog, these fixtures) agree on where each instance lives.
    for name in ("default", "test", "bench", "scratch"):
        shown = subprocess.run(
            ["bash", str(SANDBOX_SH), "dir"],
            env={k: v for k, v in os.environ.items() if k != "GPUCLOUD_SANDBOX_DIR"}
            | {"GPUCLOUD_SANDBOX_INSTANCE": name},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert Path(shown) == sandbox_paths.instance_dir(name)
    # One instance's name with another's state directory (a GPUCLOUD_SANDBOX_DIR left in a shell) is refused
    # before anything is done: with the test instance's ports, sandbox.sh would take make run's processes for
    # stale ones. (`status` changes nothing even if the check were gone; every command runs the same check.)
    mixed = Instance(sandbox.instance, run_sandbox.dir).script("status", timeout=60)
    assert mixed.returncode != 0 and f"holds sandbox instance {run_sandbox.instance}," in mixed.stdout


@pytest.mark.django_db(transaction=True)
def test_a_full_run_instance_leaves_the_capacity_of_the_test_instance_whole(
    sandbox: Sandbox,
    run_sandbox: Sandbox,
    kube_client: client.ApiClient,
    make_namespace: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # make run's side: the demo seeded as `make run` seeds it, so its regions are connected to make run's
    # instance (seed_catalog's default index, the environment naming that instance).
    monkeypatch.setenv("GPUCLOUD_SANDBOX_INSTANCE", run_sandbox.instance)
    monkeypatch.delenv("GPUCLOUD_SANDBOX_DIR", raising=False)
    monkeypatch.delenv("GPUCLOUD_REGION_KUBECONFIGS", raising=False)
    call_command("seed_demo", password="demo-password-123", stdout=StringIO())
    us_east = Region.objects.get(slug=REGION)
    assert region_server(us_east) == run_sandbox.servers[REGION] != sandbox.servers[REGION]

    run_apis = {region: run_sandbox.api_client(region) for region in run_sandbox.regions}
    run_core = client.CoreV1Api(run_apis[REGION])
    demo = SandboxTenant(demo_owner(), run_apis)
    filler = f"fill-{uuid.uuid4().hex[:6]}"
    try:
        # An 8-GPU instance launched through the API holds a whole H100 node of make run's instance (unless
        # its demo holds every one already), and pods of our own take every other free one.
        if whole_free_nodes(run_core):
            launched = demo.launch(instance_type="gpu-h100x8", region=REGION, image="pytorch", name="big")
            drive(launched["id"], state_is("running"), what="running in make run's instance")
            pod = demo.read_pod(launched["id"])
            assert pod is not None and free_gpus_by_node(run_core)[pod.spec.node_name] == 0
        create_namespace(run_apis[REGION], filler)
        for node in whole_free_nodes(run_core):
            run_core.create_namespaced_pod(filler, eight_gpu_pod(f"take-{node}", node))
        for pod in run_core.list_namespaced_pod(filler).items:
            name = pod.metadata.name
            wait_until(lambda n=name: pod_running(run_core, filler, n), timeout=60, what=f"{name} to run")
        assert whole_free_nodes(run_core) == [], "make run's instance still has a free 8-GPU node"

        # The test instance sees none of it, and the capacity test passes there.
        core = client.CoreV1Api(kube_client)
        assert gone(lambda: core.read_namespace(filler))
        assert gone(lambda: core.read_namespace(demo.namespace))
        assert_capacity_rows_follow_the_cluster(connect(us_east, sandbox), kube_client, make_namespace)
        assert region_server(us_east) == sandbox.servers[REGION]
    finally:
        # Leave make run's instance as it was found.
        delete_namespace(run_apis[REGION], filler)
        demo.cleanup()
        for name in (filler, demo.namespace):
            wait_until(
                lambda n=name: gone(lambda: run_core.read_namespace(n)),
                timeout=GONE_TIMEOUT,
                what=f"namespace {name} in make run's instance to go",
            )
        for api in run_apis.values():
            api.close()


# --- an aborted session's leftovers, and reset: on the scratch instance ----------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Instance]:
    """The `scratch` instance, one region, stopped after the module. test.lock keeps concurrent runs of
    these tests (other sessions on this machine) from sharing it."""
    instance = Instance.named("scratch")
    instance.dir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch, (instance.dir / "test.lock").open("a") as guard:
        patch.setenv("GPUCLOUD_SANDBOX_REGIONS", REGION)
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield instance
        finally:
            instance.stop()


def make_leftovers(sbx: Sandbox, tag: str) -> tuple[str, str, Nodes]:
    """What an aborted session leaves: a namespace whose pod holds a whole H100 node, a pod in `default`
    and a kwok node of its own."""
    api = sbx.api_client(REGION)
    core = client.CoreV1Api(api)
    namespace = create_namespace(api, f"aborted-{tag}")
    core.create_namespaced_pod(namespace, eight_gpu_pod("holds-a-node"))
    stray = f"stray-{tag}"
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": stray},
            "spec": {
                "containers": [{"name": "main", "image": "busybox"}],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    nodes = Nodes(core, f"GPUCLOUD-TEST-LEFTOVER-{tag}")
    nodes.create()
    wait_until(
        lambda: pod_running(core, namespace, "holds-a-node"), timeout=60, what="the leftover pod to run"
    )
    return namespace, stray, nodes


def test_a_session_alone_clears_what_an_aborted_session_left(scratch: Instance) -> None:
    tag = uuid.uuid4().hex[:6]
    first, first_lock = open_session(scratch)
    core = client.CoreV1Api(first.api_client(REGION))
    namespace, stray, nodes = make_leftovers(first, tag)
    assert len(whole_free_nodes(core)) == 3  # the leftover pod holds one of the four

    # Another session while the first runs: it shares the instance and clears nothing.
    _second, second_lock = open_session(scratch)
    assert core.read_namespace(namespace).status.phase == "Active"
    assert pod_running(core, namespace, "holds-a-node")

    # Both end without cleaning up (aborted). The next session is alone: it starts from a clean instance.
    first_lock.release()
    second_lock.release()
    _third, third_lock = open_session(scratch)
    try:
        assert gone(lambda: core.read_namespace(namespace))
        assert gone(lambda: core.read_namespaced_pod(stray, "default"))
        assert gone(lambda: core.read_node(nodes.names[0]))
        assert len(whole_free_nodes(core)) == 4  # the fleet's four H100 nodes, whole again
        names = {n.metadata.name for n in core.list_namespace().items}
        assert names == SYSTEM_NAMESPACES
    finally:
        third_lock.release()


def test_reset_waits_for_sessions_then_starts_the_instance_empty(scratch: Instance, tmp_path: Path) -> None:
    sbx, lock = open_session(scratch)
    api = sbx.api_client(REGION)
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    namespace = create_namespace(api, f"left-{uuid.uuid4().hex[:6]}")
    role = f"left-{uuid.uuid4().hex[:6]}"
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": []})

    # A session holds the instance: reset gives up after its wait and leaves everything running.
    refused = scratch.script("reset", timeout=120, GPUCLOUD_SANDBOX_RESET_WAIT="2")
    assert refused.returncode != 0 and "a test session still uses it" in refused.stdout
    assert core.read_namespace(namespace).status.phase == "Active"

    lock.release()
    done = scratch.script("reset", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:]
    fresh = Sandbox.load(scratch.dir)
    fresh_core = client.CoreV1Api(fresh.api_client(REGION))
    assert {n.metadata.name for n in fresh_core.list_namespace().items} == SYSTEM_NAMESPACES
    assert gone(lambda: client.RbacAuthorizationV1Api(fresh.api_client(REGION)).read_cluster_role(role))
    assert len(whole_free_nodes(fresh_core)) == 4

    # make run's instance is never reset by accident (here in a scratch directory: nothing could be hit).
    default = Instance("default", tmp_path).script("reset", timeout=60)
    assert default.returncode != 0 and "refusing to reset the default instance" in default.stdout
