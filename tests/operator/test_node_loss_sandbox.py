"""A node that disappears, against the sandbox with nothing mocked: the instance is rescheduled, not failed.

What happens in a real cluster, and here: the node object is deleted; kube-controller-manager's pod garbage
collector finds the pod bound to a node that no longer exists (it waits a 40 s quarantine, checking every
20 s), marks it Failed with a `DisruptionTarget` condition (reason `DeletionByPodGC`) and deletes it. The
operator's watch sees the Failed pod (a disruption, not the workload failing: nothing is recorded) and then
the deletion, and reconciles: a new pod of the same name, which the scheduler places on a node that fits.
When it is Ready the instance, still `running`, gets its connection info refreshed (`connection_changed`).

A pod the kubelet evicts is left Failed with the same condition and nobody deletes it: the reconciler
deletes it and the pod is created again.

The shared sandbox is not disturbed: the tests add kwok nodes of their own (tests/operator/own_nodes.py),
copied from `us-east-1-h100-0` but with a GPU product label of their own, and a GPU type / instance type in
the test database pinned to that label, so the instance can only land on these nodes and nobody else's
pods can (other pods select another product or do not tolerate the GPU taint). Only these nodes are
deleted; the orphaned pod is left to the real pod garbage collector (the test does not delete it); the
nodes and the tenant namespace are removed at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from kubernetes import client

from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Observation
from apps.operator import observe
from apps.operator.operator_loop import Operator, OperatorConfig
from apps.tenants.roles import Role
from tests.instances.helpers import seed
from tests.operator.own_nodes import Nodes, dedicated_instance_type
from tests.operator.sandbox_support import SandboxTenant, connect, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "us-east-1"
FAST = OperatorConfig(
    resync_seconds=2.0, lock_retry_seconds=0.5, watch_timeout_seconds=3, gc_known_tenants_only=True
)
TIMEOUT = 60.0  # bound for a hung cluster, not a performance assertion
# Pod GC deletes a missing node's pods after a 40 s quarantine, checked every 20 s (kube-controller-manager
# defaults; sandbox/sandbox.sh does not change them): up to about a minute, plus the new pod's start.
RESCHEDULE_TIMEOUT = 180.0


@pytest.fixture
def tenant(
    make_actor: Callable[..., Any], kube_clients: dict[str, client.ApiClient]
) -> Iterator[SandboxTenant]:
    sandbox_tenant = SandboxTenant(make_actor(Role.OWNER), kube_clients)
    sandbox_tenant.regions.add(REGION)
    try:
        yield sandbox_tenant
    finally:
        sandbox_tenant.cleanup()


@pytest.fixture
def test_nodes(kube_clients: dict[str, client.ApiClient]) -> Iterator[Nodes]:
    nodes = Nodes(client.CoreV1Api(kube_clients[REGION]), f"GPUCLOUD-TEST-LOSS-{uuid.uuid4().hex[:8]}")
    try:
        yield nodes
    finally:
        nodes.cleanup()


@pytest.fixture
def operator() -> Iterator[Operator]:
    running = Operator(FAST, regions=[REGION]).start()
    try:
        yield running
    finally:
        running.shutdown()


def the_pod(tenant: SandboxTenant, instance_id: Any) -> client.V1Pod | None:
    return tenant.read_pod(instance_id, REGION)


def test_a_pod_the_cluster_took_away_is_not_a_failure_of_the_instance() -> None:
    """What the pod garbage collector leaves for the watch to see just before it deletes the pod."""
    now = timezone.now()
    pod: dict[str, Any] = {
        "metadata": {"creationTimestamp": (now - timedelta(minutes=5)).isoformat()},
        "status": {
            "phase": "Failed",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists",
                },
            ],
        },
    }
    reading = observe.read_pod(pod, now=now)
    assert observe.disrupted(pod)
    assert reading.observation is None and reading.message == "PodGC: node no longer exists"
    # Without the condition a Failed pod is the workload's failure.
    pod["status"]["conditions"] = pod["status"]["conditions"][:1]
    assert not observe.disrupted(pod)
    assert observe.read_pod(pod, now=now).observation == Observation.FAILED


def launch_on_test_nodes(
    sandbox: Any, tenant: SandboxTenant, test_nodes: Nodes, operator: Operator
) -> tuple[Any, client.V1Pod]:
    """Launch an instance that fits only the test's nodes; returns its id and its pod, once running."""
    catalog = seed()
    region = connect(catalog.us_east, sandbox)
    instance_type = dedicated_instance_type(region, test_nodes.product)
    wait_for(lambda: REGION in operator.leading(), what="the operator to lead us-east-1", timeout=TIMEOUT)
    launched = tenant.launch(instance_type=instance_type.slug, region=REGION, image="pytorch", name="lossy")
    instance_id = launched["id"]
    wait_for(lambda: Instance.objects.get(pk=instance_id).state == "running", what="running", timeout=TIMEOUT)
    pod = the_pod(tenant, instance_id)
    assert pod is not None and pod.spec.node_name in test_nodes.names
    return instance_id, pod


def assert_stayed_running(instance_id: Any) -> None:
    """Once running, never anything else: no failure, no second pass through pending or provisioning."""
    instance = Instance.objects.get(pk=instance_id)
    assert instance.state == "running" and instance.failure_reason == ""
    states = list(
        InstanceEvent.objects.filter(instance_id=instance_id)
        .exclude(to_state="")
        .order_by("created_at", "id")
        .values_list("to_state", flat=True)
    )
    assert "failed" not in states
    after = states[states.index("running") :]
    assert after == ["running"] * len(after)


def situation(tenant: SandboxTenant, instance_id: Any) -> str:
    """What the instance and its pod look like, for a failure message."""
    instance = Instance.objects.get(pk=instance_id)
    pod = the_pod(tenant, instance_id)
    where = f"pod on {pod.spec.node_name!r}, phase {pod.status.phase}" if pod is not None else "no pod"
    events = list(InstanceEvent.objects.filter(instance_id=instance_id).values_list("name", "to_state"))
    return f"state={instance.state} reason={instance.failure_reason!r} {where}; events={events}"


def test_an_instance_whose_node_disappears_is_rescheduled_and_its_connection_updated(
    sandbox: Any, test_nodes: Nodes, tenant: SandboxTenant, operator: Operator
) -> None:
    first_node = test_nodes.create()
    instance_id, first_pod = launch_on_test_nodes(sandbox, tenant, test_nodes, operator)
    assert first_pod.spec.node_name == first_node
    before = tenant.detail(instance_id)["connection"]
    assert before["host"] == first_node and before["port"]

    # A second node that fits, then the first one goes away with the instance's pod on it.
    second_node = test_nodes.create()
    test_nodes.delete(first_node)

    def rescheduled() -> bool:
        pod = the_pod(tenant, instance_id)
        instance = Instance.objects.get(pk=instance_id)
        return (
            pod is not None
            and pod.metadata.uid != first_pod.metadata.uid
            and pod.spec.node_name == second_node
            and instance.connection.get("host") == second_node
        )

    try:
        wait_for(rescheduled, what="the pod on the second node", timeout=RESCHEDULE_TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {situation(tenant, instance_id)}") from None

    instance = Instance.objects.get(pk=instance_id)
    assert instance.state == "running" and instance.failure_reason == ""
    after = tenant.detail(instance_id)
    assert after["state"] == "running"
    assert after["connection"]["host"] == second_node
    assert after["connection"]["ssh_command"] == f"ssh -p {before['port']} gpucloud@{second_node}"
    changed = InstanceEvent.objects.filter(instance_id=instance_id, name="connection_changed").get()
    assert first_node in changed.message and second_node in changed.message
    assert_stayed_running(instance_id)


def test_an_evicted_pod_left_behind_is_replaced(
    sandbox: Any, test_nodes: Nodes, tenant: SandboxTenant, operator: Operator
) -> None:
    """A pod the kubelet evicted stays in the API as Failed with a DisruptionTarget condition (nobody deletes
    it): the reconciler deletes it and creates the instance's pod again. The status is written here as the
    kubelet writes it."""
    node = test_nodes.create()
    instance_id, evicted = launch_on_test_nodes(sandbox, tenant, test_nodes, operator)
    tenant.core(REGION).patch_namespaced_pod_status(
        evicted.metadata.name,
        tenant.namespace,
        {
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "TerminationByKubelet",
                        "message": "The node was low on resource: memory.",
                        "lastTransitionTime": timezone.now().isoformat(),
                    }
                ],
            }
        },
    )

    def replaced() -> bool:
        pod = the_pod(tenant, instance_id)
        return (
            pod is not None
            and pod.metadata.uid != evicted.metadata.uid
            and pod.status.phase == "Running"
            and pod.spec.node_name == node
        )

    try:
        wait_for(replaced, what="a new pod", timeout=TIMEOUT)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {situation(tenant, instance_id)}") from None
    assert tenant.detail(instance_id)["state"] == "running"
    assert_stayed_running(instance_id)
