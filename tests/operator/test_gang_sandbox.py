"""All or nothing, by the sandbox's real kube-scheduler: a gang (apps/operator/gang.py) of four 8-GPU pods on
three free nodes binds none of them, and binds all four once a fourth node is there.

The sandbox runs Kubernetes 1.35 with the Workload API and the GangScheduling plugin on (sandbox/sandbox.sh,
GANG_GATES). The test's nodes are kwok nodes of its own (tests/operator/own_nodes.py: a GPU product label
nobody else selects), so other tests' pods neither take them nor are taken into account. Objects are made
through `Cluster.create_as_is` with the administrator's client: which identity creates them is the
cluster reconciler's business.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from apps.operator import gang
from apps.operator.cluster import Cluster
from apps.operator.manifests import GPU_PRODUCT_LABEL, GPU_TAINT_KEY
from tests.operator.own_nodes import TIMEOUT, Nodes
from tests.operator.sandbox_support import wait_for

pytestmark = pytest.mark.sandbox

REGION = "us-east-1"
SIZE = 4
# How long the scheduler is given to bind part of a gang that does not fit, before the test checks that it
# bound nothing. It sees the pods within a second; the plugin's own timeout (5 minutes) is far beyond.
SETTLE_SECONDS = 5.0


def node_pod(name: str, namespace: str, product: str) -> dict[str, Any]:
    """A pod that needs a whole 8-GPU node of the test's product."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": {GPU_PRODUCT_LABEL: product},
            "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "instance",
                    "image": "registry.invalid/never-pulled:1",
                    "resources": {
                        "requests": {"nvidia.com/gpu": "8", "cpu": "1", "memory": "1Gi"},
                        "limits": {"nvidia.com/gpu": "8"},
                    },
                }
            ],
        },
    }


def test_a_gang_is_bound_whole_or_not_at_all(
    kube_clients: dict[str, client.ApiClient], make_namespace: Callable[..., str], own_nodes: Nodes
) -> None:
    api = kube_clients[REGION]
    core, cluster = client.CoreV1Api(api), Cluster(api)
    namespace = make_namespace(REGION)
    for _ in range(SIZE - 1):
        own_nodes.create()

    spec = gang.GangSpec(name="c-gang", namespace=namespace, tenant_id=uuid.uuid4(), size=SIZE)
    assert cluster.create_as_is(gang.make_gang(spec)) is not None
    assert cluster.create_as_is(gang.make_gang(spec)) is None  # a retry makes no second
    for rank in range(SIZE):
        pod = gang.join_gang(node_pod(f"c-gang-{rank}", namespace, own_nodes.product), spec.name)
        created = cluster.create_as_is(pod)
        assert created is not None and gang.gang_of(created) == spec.name  # the apiserver kept the field

    def bound() -> dict[str, str]:
        pods = core.list_namespaced_pod(namespace).items
        return {p.metadata.name: p.spec.node_name for p in pods if p.spec.node_name}

    time.sleep(SETTLE_SECONDS)
    assert bound() == {}, "part of the gang was bound while the whole did not fit"

    own_nodes.create()
    placed = wait_for(
        lambda: (b := bound()) and len(b) == SIZE and b, what="the whole gang bound", timeout=TIMEOUT
    )
    assert sorted(placed.values()) == sorted(own_nodes.names)  # one node each, the test's four
