"""The operator against the sandbox, nothing mocked: it runs in-process (threads with a stop event) or as
`manage.py operator` subprocesses on the test database, and the test only acts through the API or on the
cluster behind the operator's back, never calling the reconciler itself.

Every operator here uses `gc_known_tenants_only`: the sandbox is shared with other test runs whose
instances live in other databases, and must not be collected as orphans.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.catalog.models import RegionCapacity
from apps.instances.models import Instance, InstanceEvent
from apps.operator import manifests, names
from apps.operator.leader import RegionLock
from apps.operator.operator_loop import Operator, OperatorConfig
from apps.operator.reconciler import load_instance
from apps.operator.specs import spec_from_instance
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FAST = OperatorConfig(
    resync_seconds=2.0, lock_retry_seconds=0.5, watch_timeout_seconds=3, gc_known_tenants_only=True
)
FAST_ARGS = [
    "--region=us-east-1",
    "--resync-seconds=2",
    "--lock-retry-seconds=0.5",
    "--watch-timeout-seconds=3",
]
TIMEOUT = 60.0  # bound for a hung cluster, not a performance assertion


@pytest.fixture
def operators() -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(**overrides: Any) -> Operator:
        operator = Operator(dataclasses.replace(FAST, **overrides), regions=["us-east-1"]).start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.shutdown()


def state_of(instance_id: Any) -> str:
    return Instance.objects.get(pk=instance_id).state


def pods_of(tenant: SandboxTenant, instance_id: Any) -> list[client.V1Pod]:
    selector = f"{names.INSTANCE_LABEL}={instance_id}"
    return tenant.core().list_namespaced_pod(tenant.namespace, label_selector=selector).items


def ghost_pod(tenant: SandboxTenant, like_instance: Any) -> str:
    """A gpucloud-labelled pod of the tenant whose instance does not exist; returns its name."""
    ghost = uuid.uuid4()
    pod = manifests.make_pod(spec_from_instance(load_instance(like_instance)))
    name = names.instance_object_name(ghost)
    pod["metadata"].update(name=name, labels=names.common_labels(tenant.actor.tenant.pk, ghost))
    tenant.core().create_namespaced_pod(tenant.namespace, pod)
    return name


def gone(tenant: SandboxTenant, pod_name: str) -> bool:
    try:
        tenant.core().read_namespaced_pod(pod_name, tenant.namespace)
        return False
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise


def test_the_operator_runs_heals_collects_and_terminates(
    sandbox: Any, tenant: SandboxTenant, operators: Callable[..., Operator]
) -> None:
    catalog = seed()
    region = connect(catalog.us_east, sandbox)
    operator = operators()
    wait_for(
        lambda: "us-east-1" in operator.leading(), what="the operator to lead us-east-1", timeout=TIMEOUT
    )

    launched = tenant.launch(instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name="watched")
    instance_id = launched["id"]
    # The on-commit reconcile made the pod; only the operator's watch can see it become ready.
    wait_for(lambda: state_of(instance_id) == "running", what="running", timeout=TIMEOUT)
    detail = tenant.detail(instance_id)
    assert detail["connection"]["port"] and detail["connection"]["ssh_command"].startswith("ssh -p ")
    (pod,) = pods_of(tenant, instance_id)
    node = tenant.core().read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    wait_for(
        lambda: InstanceEvent.objects.filter(
            instance_id=instance_id, kind="kube_event", name="Scheduled"
        ).exists(),
        what="the scheduler's Event in the instance's timeline",
        timeout=TIMEOUT,
    )
    kube_events = InstanceEvent.objects.filter(instance_id=instance_id, kind="kube_event", name="Scheduled")
    assert kube_events.count() == 1 and pod.spec.node_name in kube_events.get().message

    # A pod deleted behind the operator's back comes back.
    tenant.core().delete_namespaced_pod(pod.metadata.name, tenant.namespace, grace_period_seconds=0)

    def replaced() -> bool:
        pods = pods_of(tenant, instance_id)
        return (
            len(pods) == 1 and pods[0].metadata.uid != pod.metadata.uid and pods[0].status.phase == "Running"
        )

    wait_for(replaced, what="a new pod", timeout=TIMEOUT)
    assert state_of(instance_id) == "running"

    # A labelled pod of no instance is collected.
    orphan = ghost_pod(tenant, instance_id)
    wait_for(lambda: gone(tenant, orphan), what="the orphan pod to be collected", timeout=TIMEOUT)

    # Capacity rows are the operator's now.
    h100_row = RegionCapacity.objects.get(region=region, gpu_type__slug="h100-80gb")
    assert h100_row.observed_at is not None and h100_row.gpus <= 32

    # Terminate: the on-commit reconcile deletes the objects, the watch sees the pod go.
    tenant.act(instance_id, "terminate")
    wait_for(lambda: state_of(instance_id) == "terminated", what="terminated", timeout=TIMEOUT)
    wait_for(lambda: not pods_of(tenant, instance_id), what="the pod to be gone", timeout=TIMEOUT)


def test_two_operators_only_one_acts(
    sandbox: Any, tenant: SandboxTenant, operators: Callable[..., Operator]
) -> None:
    catalog = seed()
    region = connect(catalog.us_east, sandbox)
    first = operators()
    wait_for(lambda: "us-east-1" in first.leading(), what="the first operator to lead", timeout=TIMEOUT)
    second = operators()
    wait_for(lambda: region.pk in second.threads, what="the second operator's region thread", timeout=TIMEOUT)
    assert not RegionLock(region.pk).try_acquire()  # held, by exactly one of them

    launched = tenant.launch(instance_type="cpu-4x", region="us-east-1", image="cuda-12", name="shared")
    orphan = ghost_pod(tenant, launched["id"])
    wait_for(lambda: state_of(launched["id"]) == "running", what="running", timeout=TIMEOUT)
    wait_for(lambda: gone(tenant, orphan), what="the orphan to be collected", timeout=TIMEOUT)
    assert first.leading() == {"us-east-1"} and second.leading() == set()
    assert second.threads[region.pk].resyncs == 0 and first.threads[region.pk].resyncs > 0

    # The leader goes away: the standby takes the region and acts.
    first.shutdown()
    wait_for(lambda: "us-east-1" in second.leading(), what="the standby to lead", timeout=TIMEOUT)
    orphan = ghost_pod(tenant, launched["id"])
    wait_for(lambda: gone(tenant, orphan), what="the new leader to collect", timeout=TIMEOUT)
    # The counter moves when the resync that collected the orphan has finished, a moment after the pod went.
    wait_for(lambda: second.threads[region.pk].resyncs > 0, what="the new leader's resync", timeout=TIMEOUT)


def _operator_process(log: Path) -> subprocess.Popen[bytes]:
    db = connection.settings_dict
    url = (
        f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": url}
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "manage.py", "operator", *FAST_ARGS],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def test_killed_mid_launch_and_started_again_converges(
    sandbox: Any, tenant: SandboxTenant, tmp_path: Path
) -> None:
    catalog = seed()
    # Launched while the region has no cluster connection: it stays pending, nothing is created.
    launched = tenant.launch(instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name="killed")
    instance_id = launched["id"]
    assert state_of(instance_id) == "pending"
    connect(catalog.us_east, sandbox)
    log = tmp_path / "operator.log"
    processes = [_operator_process(log)]
    try:
        # The operator's resync creates the pod; kill it (SIGKILL: no cleanup, lock dropped with its
        # connection) as soon as the pod exists, before it could see the pod ready.
        wait_for(lambda: pods_of(tenant, instance_id), what="the operator to create the pod", timeout=TIMEOUT)
        processes[0].kill()
        processes[0].wait(TIMEOUT)
        processes.append(_operator_process(log))
        wait_for(
            lambda: state_of(instance_id) == "running", what="running after the restart", timeout=TIMEOUT
        )
        assert len(pods_of(tenant, instance_id)) == 1
        assert Instance.objects.get(pk=instance_id).connection["port"]
        # Signal handlers are installed before the command says it is starting.
        wait_for(
            lambda: log.read_text().count("operator: starting") == 2, what="the restart", timeout=TIMEOUT
        )
        processes[1].send_signal(signal.SIGTERM)
        assert processes[1].wait(TIMEOUT) == 0
        output = log.read_text()
        assert "operator: stopped" in output
        assert "BEGIN" not in output and "client-key-data" not in output  # no kubeconfig in the logs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)


def test_an_unreachable_apiserver_does_not_stop_the_operator(
    sandbox: Any, operators: Callable[..., Operator]
) -> None:
    """The region's kubeconfig points at a port where nothing listens: the operator leads, its resyncs
    fail and back off, it keeps running, and a stop still ends it cleanly and releases the region."""
    catalog = seed()
    region = connect(catalog.us_east, sandbox)
    kubeconfig = region.get_kubeconfig()
    server = next(
        line.split("server:", 1)[1].strip() for line in kubeconfig.splitlines() if "server:" in line
    )
    region.set_kubeconfig(kubeconfig.replace(server, "https://127.0.0.1:9"))
    region.save()
    operator = operators()
    wait_for(lambda: "us-east-1" in operator.leading(), what="leading", timeout=TIMEOUT)
    wait_for(
        lambda: operator.threads[region.pk].resync_failures >= 2,
        what="failed resyncs, retried",
        timeout=TIMEOUT,
    )
    thread = operator.threads[region.pk]
    assert thread.is_alive() and thread.resyncs == 0
    operator.shutdown()
    assert not thread.is_alive()
    probe = RegionLock(region.pk)
    assert probe.try_acquire()
    probe.release()


def test_a_long_resync_counts_as_going_round_at_every_batch(
    sandbox: Any, tenant: SandboxTenant, operators: Callable[..., Operator], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Liveness (apps/core/heartbeat.py): a cold start's first resync can take many minutes at thousands of
    # pods; the region thread must not look stalled while it works through its batches.
    from apps.operator import operator_loop

    catalog = seed()
    connect(catalog.us_east, sandbox)
    for _ in range(3):
        tenant.launch(instance_type="cpu-4x", region="us-east-1", image="pytorch")
    monkeypatch.setattr(operator_loop, "RESYNC_BATCH", 1)
    stamps: list[tuple[float, float]] = []  # (when a batch was loaded, the thread's went_round then)
    real_load = operator_loop.load_instances

    def load(ids: Any) -> Any:
        (thread,) = operator.threads.values()
        stamps.append((time.monotonic(), thread.went_round))
        time.sleep(0.3)  # a slow batch: the whole pass outlasts any one batch
        return real_load(ids)

    monkeypatch.setattr(operator_loop, "load_instances", load)
    operator = operators()
    wait_for(lambda: len(stamps) >= 3, what="a resync over three batches", timeout=TIMEOUT)
    for (at, went_round), (before, _) in zip(stamps[1:3], stamps[:2], strict=True):
        assert went_round >= before + 0.3 and went_round <= at  # refreshed for this batch, not the pass
