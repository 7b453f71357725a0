"""kwok nodes a test makes for itself: copies of a sandbox H100 node with a GPU product label of their own,
so that only the test's pods (selecting that label) land on them and none of theirs lands elsewhere."""

from __future__ import annotations

import copy
import uuid
from decimal import Decimal

from django.utils import timezone
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.catalog.models import GpuType, InstanceType, Region, RegionCapacity
from tests.operator.sandbox_support import wait_for

REGION = "us-east-1"
TEMPLATE_NODE = "us-east-1-h100-0"
PRODUCT_LABEL = "nvidia.com/gpu.product"
TIMEOUT = 60.0  # bound for a hung cluster, not a performance assertion


class Nodes:
    """kwok nodes made by a test: copies of a sandbox H100 node with a product label of their own."""

    def __init__(self, core: client.CoreV1Api, product: str):
        self.core, self.product = core, product
        self.names: list[str] = []

    def create(self, *, wait: bool = True, labels: dict[str, str] | None = None) -> str:
        """`labels`: set on the node over the template's (a topology block of the test's own, say)."""
        template = self.core.api_client.sanitize_for_serialization(self.core.read_node(TEMPLATE_NODE))
        name = f"{REGION}-h100-test-{uuid.uuid4().hex[:8]}"
        now = timezone.now().isoformat()
        node_labels = dict(template["metadata"]["labels"])
        node_labels.update({"kubernetes.io/hostname": name, PRODUCT_LABEL: self.product, **(labels or {})})
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                # kwok manages only nodes with this annotation (sandbox/sandbox.sh, sandbox/fleet.py).
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": node_labels,
            },
            "spec": {"taints": copy.deepcopy(template["spec"].get("taints") or [])},
            # Ready from the start (kwok keeps it so): tests that check every GPU node is Ready, in other
            # runs sharing the sandbox, never see it half made.
            "status": {
                "capacity": dict(template["status"]["capacity"]),
                "allocatable": dict(template["status"]["allocatable"]),
                "conditions": [
                    {**condition, "lastHeartbeatTime": now, "lastTransitionTime": now}
                    for condition in template["status"].get("conditions") or []
                ],
            },
        }
        self.core.create_node(body)
        self.names.append(name)
        if wait:
            wait_for(lambda: self.ready(name), what=f"node {name} to be Ready", timeout=TIMEOUT)
        return name

    def create_many(self, count: int) -> list[str]:
        """`count` nodes, made one after another and then waited for together."""
        made = [self.create(wait=False) for _ in range(count)]
        wait_for(
            lambda: all(self.ready(name) for name in made), what=f"{count} nodes to be Ready", timeout=TIMEOUT
        )
        return made

    def ready(self, name: str) -> bool:
        node = self.core.read_node(name)
        allocatable = (node.status.allocatable or {}).get("nvidia.com/gpu")
        conditions = {c.type: c.status for c in node.status.conditions or []}
        return conditions.get("Ready") == "True" and allocatable == "8"

    def delete(self, name: str) -> None:
        try:
            self.core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cleanup(self) -> None:
        for name in self.names:
            self.delete(name)


def dedicated_instance_type(region: Region, product: str, *, nodes: int = 1) -> InstanceType:
    """A GPU type matched by the test nodes' product label alone (`product`), a pool of `nodes` 8-GPU
    machines of it in `region`, and a one-GPU instance type of it."""
    gpu_type = GpuType.objects.create(
        slug=f"own-{product[-8:].lower()}", model="Test GPU", memory_gib=80, product_label=product
    )
    RegionCapacity.objects.create(
        region=region, gpu_type=gpu_type, gpus=8 * nodes, vcpu=200 * nodes, memory_gib=1750 * nodes
    )
    return InstanceType.objects.create(
        slug=f"{gpu_type.slug}x1",
        name="1x Test GPU",
        gpu_type=gpu_type,
        gpu_count=1,
        vcpu=8,
        memory_gib=64,
        price_per_hour=Decimal("1.0000"),
    )
