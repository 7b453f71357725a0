"""A zone drill on the sandbox's real control plane (kwok nodes): one zone's machines stop working while
launches go on. Instances there are reported (state message, a node_lost event) and started again on a
ready machine of the other zone, with nothing billed between the loss and the new start; an instance pinned
to the lost zone waits for it; new launches without a zone land in the zone that works; a launch naming
the lost zone is refused for capacity (docs/networking.md "When a zone goes down").

The test makes four kwok nodes of its own (tests/operator/own_nodes.py), two labelled zone us-east-1a and two
us-east-1b, with a GPU product only its instance type selects, so nothing else lands on them and the lost
machines are its own. A machine is lost as a real one is: kwok stops answering for it (its annotation no
longer selects it) and its Ready condition turns False, which the node controller turns into the
not-ready taint. The apiserver, controller-manager and scheduler are real; the operator's wait before
acting (INSTANCE_NODE_LOST_AFTER_SECONDS) is shortened to nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.utils import timezone
from kubernetes import client

from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.instances.models import Instance, InstanceEvent
from apps.operator import observed
from apps.operator.client import api_client
from apps.operator.cluster import Cluster as Kube
from apps.operator.operator_loop import refresh_capacity
from apps.operator.reconciler import reconcile
from tests.instances.helpers import seed
from tests.operator.own_nodes import TIMEOUT, Nodes, dedicated_instance_type
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db(transaction=True)

ZONE = "topology.kubernetes.io/zone"
A, B = "us-east-1a", "us-east-1b"


def lose(core: client.CoreV1Api, name: str, at: Any) -> None:
    """The machine stops: kwok no longer keeps it alive, and its Ready condition says so since `at`."""
    core.patch_node(name, {"metadata": {"annotations": {"kwok.x-k8s.io/node": "lost"}}})
    node = core.read_node(name)
    conditions = [c for c in core.api_client.sanitize_for_serialization(node.status.conditions) or []]
    for condition in conditions:
        if condition["type"] == "Ready":
            condition.update(
                status="False",
                reason="KubeletStopped",
                message="the zone's power failed (drill)",
                lastHeartbeatTime=at.isoformat(),
                lastTransitionTime=at.isoformat(),
            )
    core.patch_node_status(name, {"status": {"conditions": conditions}})


def not_ready_tainted(core: client.CoreV1Api, name: str) -> bool:
    taints = core.read_node(name).spec.taints or []
    return any(t.key == "node.kubernetes.io/not-ready" for t in taints)


def node_zone(core: client.CoreV1Api, pod: client.V1Pod | None) -> str | None:
    if pod is None or not pod.spec.node_name:
        return None
    return core.read_node(pod.spec.node_name).metadata.labels.get(ZONE)


def test_a_lost_zone_moves_its_instances_bills_nothing_for_the_gap_and_launches_go_to_the_other(
    sandbox: Any,
    tenant: SandboxTenant,
    own_nodes: Nodes,
    kube_clients: dict[str, client.ApiClient],
    settings: Any,
) -> None:
    settings.INSTANCE_NODE_LOST_AFTER_SECONDS = 0
    admin = client.CoreV1Api(kube_clients["us-east-1"])
    in_a = [own_nodes.create(wait=False, labels={ZONE: A}) for _ in range(2)]
    in_b = [own_nodes.create(wait=False, labels={ZONE: B}) for _ in range(2)]
    wait_for(lambda: all(own_nodes.ready(n) for n in in_a + in_b), what="the drill's nodes", timeout=TIMEOUT)
    region = connect(seed().us_east, sandbox)
    instance_type = dedicated_instance_type(region, own_nodes.product, nodes=4)
    set_quota(tenant.actor.tenant, max_gpus=16, max_instances=10, max_vcpu=200, max_memory_gib=2000)
    kube = Kube(api_client(region))
    refresh_capacity(kube, region)
    core = tenant.core()
    body = {"instance_type": instance_type.slug, "region": "us-east-1", "image": "pytorch"}

    # One instance lands in zone b by itself (zone a's machines cordoned meanwhile), one is pinned there.
    for name in in_a:
        admin.patch_node(name, {"spec": {"unschedulable": True}})
    moved = tenant.launch(name="moved", **body)
    drive(moved["id"], state_is("running"), what="running", timeout=TIMEOUT)
    for name in in_a:
        admin.patch_node(name, {"spec": {"unschedulable": False}})
    pinned = tenant.launch(name="pinned", zone=B, **body)
    drive(pinned["id"], state_is("running"), what="running", timeout=TIMEOUT)
    first_pod = tenant.read_pod(moved["id"])
    assert node_zone(core, first_pod) == B and node_zone(core, tenant.read_pod(pinned["id"])) == B
    first_start = Instance.objects.get(pk=moved["id"]).billing_since
    assert first_start is not None

    # Zone b goes down. A node condition's time has whole seconds: a second on, so the loss is after the
    # instances' own last changes (billing never stops before those).
    time.sleep(1.1)
    lost_at = timezone.now().replace(microsecond=0)
    for name in in_b:
        lose(admin, name, lost_at)
    wait_for(
        lambda: all(not_ready_tainted(admin, n) for n in in_b), what="the not-ready taint", timeout=TIMEOUT
    )
    refresh_capacity(kube, region)

    # The operator's resync (a fresh list of the nodes, as every 30 s) finds the loss. The unpinned
    # instance is reported and started again in zone a.
    seen = observed.take(kube)
    reconcile(moved["id"], seen)
    instance = Instance.objects.get(pk=moved["id"])
    assert instance.state == "starting"
    assert "stopped working" in instance.state_message and B in instance.state_message
    event = InstanceEvent.objects.get(instance_id=moved["id"], name="node_lost")
    assert event.reason == "node_lost" and event.created_at == lost_at
    instance = drive(moved["id"], state_is("running"), what="running again", timeout=TIMEOUT)
    replaced = tenant.read_pod(moved["id"])
    assert replaced is not None and replaced.metadata.uid != first_pod.metadata.uid
    assert node_zone(core, replaced) == A
    second_start = instance.billing_since
    assert second_start is not None and second_start > lost_at

    # The pinned one waits for its zone, and says so.
    reconcile(pinned["id"], seen)
    instance = Instance.objects.get(pk=pinned["id"])
    assert instance.state == "starting"
    assert f"waits for a machine in zone {B}" in instance.state_message
    waiting = drive(pinned["id"], lambda _: tenant.read_pod(pinned["id"]) is not None, what="its new pod")
    assert waiting.state == "starting"
    pod = tenant.read_pod(pinned["id"])
    assert pod is not None and pod.spec.node_name is None  # nowhere to go: pending, not elsewhere
    assert pod.spec.node_selector[ZONE] == B

    # The churn goes on: launches without a zone land in zone a; a launch naming zone b is refused.
    churn = [tenant.launch(name=f"churn-{i}", **body) for i in range(3)]
    for launched in churn:
        drive(launched["id"], state_is("running"), what="running", timeout=TIMEOUT)
        assert node_zone(core, tenant.read_pod(launched["id"])) == A
    response = tenant.actor.token_client().post(
        tenant.actor.url("/instances"), {**body, "name": "into-b", "zone": B}, format="json"
    )
    assert response.status_code == 409 and response.json()["error"]["details"] == {"zone": B}

    # Billing: the first run ends at the loss, the second starts with its container; nothing in between.
    # The ledger counts whole seconds (apps/billing/intervals.py floors every instant).
    first_start, second_start = first_start.replace(microsecond=0), second_start.replace(microsecond=0)
    tenant.act(moved["id"], "terminate")
    drive(moved["id"], state_is("terminated"), what="terminated", timeout=TIMEOUT)
    metering.meter_instance(Instance.objects.get(pk=moved["id"]))
    periods = sorted(
        r.period for r in UsageRecord.objects.filter(resource_type="instance", resource_id=str(moved["id"]))
    )
    assert periods[0].lower == first_start
    assert max(p.upper for p in periods if p.upper <= lost_at) == lost_at
    assert min(p.lower for p in periods if p.lower >= lost_at) == second_start
    assert not [p for p in periods if p.lower < second_start and p.upper > lost_at]
