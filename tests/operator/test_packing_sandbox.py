"""Pack, do not spread: small GPU instances share a node, so whole nodes stay whole for the instances and
cluster nodes that need all eight GPUs (sandbox/scheduler-profiles.yaml; docs/operations.md, "Scheduling
GPUs").

Against the sandbox's real kube-scheduler. The test adds four 8-GPU kwok nodes of its own, with a GPU
product label of their own and a GPU type pinned to it (tests/operator/own_nodes.py), so nobody else's pods
land on them and these instances land nowhere else. Eight one-GPU instances are launched through the API
one after another; with the default profile (LeastAllocated, balanced) the scheduler put each on the
emptiest node and no node stayed whole.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from apps.catalog.models import InstanceType, RegionCapacity
from apps.catalog.selectors import whole_nodes_free
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.operator_loop import refresh_capacity
from apps.quotas.models import TenantQuota
from tests.instances.helpers import seed
from tests.operator.own_nodes import TIMEOUT, Nodes, dedicated_instance_type
from tests.operator.sandbox_support import SandboxTenant, connect, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "us-east-1"
NODES = 4
LAUNCHES = 8


def test_eight_one_gpu_instances_leave_three_of_four_nodes_whole(
    sandbox: Any, tenant: SandboxTenant, own_nodes: Nodes
) -> None:
    for _ in range(NODES):
        own_nodes.create()
    region = connect(seed().us_east, sandbox)
    instance_type = dedicated_instance_type(region, own_nodes.product)
    RegionCapacity.objects.filter(region=region, gpu_type=instance_type.gpu_type).update(
        gpus=8 * NODES, vcpu=200 * NODES, memory_gib=1750 * NODES
    )
    TenantQuota.objects.filter(tenant=tenant.actor.tenant).update(
        max_gpus=LAUNCHES, max_instances=LAUNCHES, max_vcpu=8 * LAUNCHES, max_memory_gib=64 * LAUNCHES
    )
    core = tenant.core(REGION)
    ids = []
    for index in range(LAUNCHES):
        launched = tenant.launch(
            instance_type=instance_type.slug, region=REGION, image="pytorch", name=f"small-{index}"
        )
        ids.append(launched["id"])
        # One at a time, each bound before the next arrives, as launches spread over minutes are.
        wait_for(
            lambda i=launched["id"]: (pod := tenant.read_pod(i, REGION)) is not None and pod.spec.node_name,
            what=f"instance {index}'s pod to be bound",
            timeout=TIMEOUT,
        )

    per_node = Counter(tenant.read_pod(i, REGION).spec.node_name for i in ids)  # type: ignore[union-attr]
    assert set(per_node) <= set(own_nodes.names)
    whole = [name for name in own_nodes.names if per_node[name] == 0]
    assert per_node.most_common(1)[0][1] == LAUNCHES, per_node
    assert len(whole) == NODES - 1
    for name in whole:  # the scheduler's view: nothing on them at all
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={name}").items
        assert pods == []

    # The catalog sees the same: three nodes wholly free for an 8-GPU type, in the block the test nodes
    # copied from us-east-1-h100-0 (sandbox/fleet.yaml).
    whole_type = InstanceType.objects.create(
        slug=f"{instance_type.gpu_type.slug}x8",
        name="8x Test GPU",
        gpu_type=instance_type.gpu_type,
        gpu_count=8,
        vcpu=64,
        memory_gib=512,
        price_per_hour=Decimal("8.0000"),
    )
    refresh_capacity(Cluster(api_client(region)), region)
    assert whole_nodes_free(region=region, instance_type=whole_type) == {"us-east-1-h100-b0": NODES - 1}
