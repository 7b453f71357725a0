"""Nodes as the capacity pass sees them, for staff's capacity overview (catalog.RegionNode).

`node_rows` is pure (node and pod dicts in, one `NodeRow` per node out); `write_nodes` replaces a region's
rows with them. A node's state:

- cordoned: `spec.unschedulable` (kubectl cordon), whatever its readiness: someone took it out on purpose;
- ready / not_ready: its `Ready` condition is True / False;
- unknown: the condition is Unknown (the node controller lost contact) or missing.

The reason says why a node may not take pods: the Ready condition's message when it is not ready, pressure
conditions that are on, and taints that repel pods. Taints every GPU node carries by design (the GPU taint
our pods tolerate) and taints that repeat the state (cordoned, not ready, unreachable) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.catalog.models import GpuType, NodeState, Region, RegionNode
from apps.operator import names
from apps.operator.capacity import node_pool, pod_requests, quantity
from apps.operator.manifests import GPU_TAINT_KEY, ZONE_LABEL

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REASON_MAX = 300
MILLI = Decimal("0.001")
# Taints that say no more than the state column, or that our GPU pods tolerate.
QUIET_TAINTS = frozenset(
    {
        GPU_TAINT_KEY,
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    }
)
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class NodeRow:
    name: str
    gpu_product: str
    gpu_resource: str  # "" for CPU-only nodes
    gpus_allocatable: int
    gpus_requested: int  # every scheduled, unfinished pod on the node
    gpus_requested_by_instances: int  # the part of it held by our instances' pods
    vcpu_allocatable: Decimal
    vcpu_requested: Decimal
    memory_allocatable: int  # bytes
    memory_requested: int
    state: str
    reason: str
    instance_type: str
    zone: str
    block: str = ""  # the region's topology labels (Region.topology_block_label, _rack_label)
    rack: str = ""


def node_state(node: dict[str, Any]) -> tuple[str, str]:
    """(state, reason) of one node dict."""
    spec = node.get("spec") or {}
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    notes: list[str] = []
    ready = conditions.get("Ready")
    if ready is None:
        readiness = NodeState.UNKNOWN
        notes.append("no Ready condition reported")
    elif ready.get("status") == "True":
        readiness = NodeState.READY
    else:
        readiness = NodeState.NOT_READY if ready.get("status") == "False" else NodeState.UNKNOWN
        detail = ready.get("message") or ready.get("reason") or ""
        notes.append(f"Ready={ready.get('status')}" + (f": {detail}" if detail else ""))
    notes.extend(
        sorted(kind for kind, c in conditions.items() if kind != "Ready" and c.get("status") == "True")
    )
    for taint in spec.get("taints") or []:
        key = taint.get("key", "")
        if key in QUIET_TAINTS or taint.get("effect") not in BLOCKING_EFFECTS:
            continue
        value = taint.get("value")
        notes.append(f"taint {key}{'=' + value if value else ''}:{taint['effect']}")
    state = NodeState.CORDONED if spec.get("unschedulable") else readiness
    reason = "; ".join(notes)
    if len(reason) > REASON_MAX:
        reason = reason[: REASON_MAX - 1] + "…"
    return str(state), reason


def node_rows(
    nodes: Iterable[dict[str, Any]],
    pods: Iterable[dict[str, Any]],
    *,
    instances: frozenset[str],
    block_label: str = "",
    rack_label: str = "",
) -> list[NodeRow]:
    """One row per node, with the requests of the scheduled, unfinished pods bound to it. `instances`:
    ids of our instances that hold compute (their pods' share is reported apart). `block_label` and
    `rack_label`: the node labels naming its place in the fabric (empty: not read)."""
    info: dict[str, dict[str, Any]] = {}
    for node in nodes:
        metadata = node.get("metadata") or {}
        labels = metadata.get("labels") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        key, resource = node_pool(node)
        state, reason = node_state(node)
        info[metadata.get("name", "")] = {
            "gpu_product": key[0] if key else "",
            "gpu_resource": resource or "",
            "gpus_allocatable": quantity(allocatable.get(resource)) if resource else Decimal(0),
            "vcpu_allocatable": quantity(allocatable.get("cpu")),
            "memory_allocatable": quantity(allocatable.get("memory")),
            "state": state,
            "reason": reason,
            "instance_type": labels.get(INSTANCE_TYPE_LABEL, ""),
            "zone": labels.get(ZONE_LABEL, ""),
            "block": labels.get(block_label, ""),  # no label has an empty key: "" reads nothing
            "rack": labels.get(rack_label, ""),
            "gpus": Decimal(0),
            "gpus_mine": Decimal(0),
            "vcpu": Decimal(0),
            "memory": Decimal(0),
        }
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or node_name not in info:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        row = info[node_name]
        requests = pod_requests(pod)
        gpus = requests.get(row["gpu_resource"], Decimal(0)) if row["gpu_resource"] else Decimal(0)
        row["gpus"] += gpus
        instance = ((pod.get("metadata") or {}).get("labels") or {}).get(names.INSTANCE_LABEL)
        if instance and instance in instances:
            row["gpus_mine"] += gpus
        row["vcpu"] += requests.get("cpu", Decimal(0))
        row["memory"] += requests.get("memory", Decimal(0))
    return [
        NodeRow(
            name=name,
            gpu_product=row["gpu_product"],
            gpu_resource=row["gpu_resource"],
            gpus_allocatable=int(row["gpus_allocatable"]),
            gpus_requested=int(row["gpus"]),
            gpus_requested_by_instances=int(row["gpus_mine"]),
            vcpu_allocatable=row["vcpu_allocatable"],
            vcpu_requested=row["vcpu"],
            memory_allocatable=int(row["memory_allocatable"]),
            memory_requested=int(row["memory"]),
            state=row["state"],
            reason=row["reason"],
            instance_type=row["instance_type"],
            zone=row["zone"],
            block=row["block"],
            rack=row["rack"],
        )
        for name, row in sorted(info.items())
    ]


_UPDATED = [
    "gpu_type",
    "gpu_product",
    "gpu_resource",
    "gpus_allocatable",
    "gpus_requested",
    "gpus_requested_by_instances",
    "vcpu_allocatable",
    "vcpu_requested",
    "memory_allocatable_bytes",
    "memory_requested_bytes",
    "state",
    "reason",
    "instance_type",
    "zone",
    "block",
    "rack",
    "observed_at",
]


def write_nodes(region: Region, rows: list[NodeRow], *, now: datetime | None = None) -> int:
    """Make the region's RegionNode rows exactly `rows`: upsert each (one statement), delete the nodes the
    cluster no longer lists. Returns the number of rows written."""
    by_key = {(g.product_label, g.resource_name): g.pk for g in GpuType.objects.all()}
    observed_at = now or timezone.now()
    objects = [
        RegionNode(
            region=region,
            name=row.name,
            gpu_type_id=by_key.get((row.gpu_product, row.gpu_resource)) if row.gpu_resource else None,
            gpu_product=row.gpu_product[:100],
            gpu_resource=row.gpu_resource[:100],
            gpus_allocatable=max(0, row.gpus_allocatable),
            gpus_requested=max(0, row.gpus_requested),
            gpus_requested_by_instances=max(0, row.gpus_requested_by_instances),
            vcpu_allocatable=row.vcpu_allocatable.quantize(MILLI),
            vcpu_requested=row.vcpu_requested.quantize(MILLI),
            memory_allocatable_bytes=row.memory_allocatable,
            memory_requested_bytes=row.memory_requested,
            state=row.state,
            reason=row.reason,
            instance_type=row.instance_type[:100],
            zone=row.zone[:100],
            block=row.block[:100],
            rack=row.rack[:100],
            observed_at=observed_at,
        )
        for row in rows
    ]
    with transaction.atomic():
        if objects:
            RegionNode.objects.bulk_create(
                objects, update_conflicts=True, unique_fields=["region", "name"], update_fields=_UPDATED
            )
        RegionNode.objects.filter(region=region).exclude(name__in=[row.name for row in rows]).delete()
    return len(objects)
