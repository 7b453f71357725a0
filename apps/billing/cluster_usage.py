"""Usage of cluster nodes, grouped under their cluster (docs/billing.md "Clusters").

A node is billed like any instance: its ledger rows are its own (resource `instance`, its id). Only the
presentation groups them: the usage API and the invoice look up which of the rows' instances are nodes of a
cluster, in one query whatever the number of rows, and add up the nodes' lines per cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import CharField, QuerySet
from django.db.models.functions import Cast

from apps.instances.models import Instance

HOUR = Decimal(3600)
HOUR_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class NodeRef:
    """Which cluster an instance is a node of, and its rank there."""

    cluster_id: uuid.UUID
    cluster_name: str
    rank: int | None


def node_keys(*, tenant: Any) -> QuerySet[Any, Any]:
    """The ledger `resource_id`s (the instance id as text) of the tenant's cluster nodes, as a subquery:
    `UsageRecord.objects.filter(resource_type="instance", resource_id__in=node_keys(tenant=t))`."""
    return (
        Instance.objects.filter(tenant=tenant, cluster__isnull=False)
        .annotate(key=Cast("pk", output_field=CharField()))
        .values("key")
    )


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def nodes_by_resource(*, tenant: Any, resource_ids: Iterable[str]) -> dict[str, NodeRef]:
    """The cluster of each of these instances (ledger resource ids) that is a node of one; one query."""
    ids = {i for i in (_uuid_or_none(r) for r in resource_ids) if i is not None}
    if not ids:
        return {}
    rows = Instance.objects.filter(tenant=tenant, cluster__isnull=False, pk__in=ids).values_list(
        "pk", "cluster_id", "cluster__name", "rank"
    )
    return {str(pk): NodeRef(cluster_id=cid, cluster_name=name, rank=rank) for pk, cid, name, rank in rows}


def cluster_subtotals(lines: Iterable[Mapping[str, Any]], *, node_key: str = "key") -> list[dict[str, Any]]:
    """Per cluster, from lines that carry `cluster`, `cluster_name`, `quantity_seconds` and `amount` (lines
    with no cluster are left out): `id`, `name`, `node_count` (nodes with lines, told apart by `node_key`),
    `quantity_seconds`, `quantity_hours` and `amount`, the exact sum of its lines' amounts. Ordered by name,
    then id."""
    groups: dict[uuid.UUID, dict[str, Any]] = {}
    for line in lines:
        cluster = line.get("cluster")
        if cluster is None:
            continue
        group = groups.setdefault(
            cluster,
            {"id": cluster, "name": line["cluster_name"], "nodes": set(), "seconds": 0, "amount": Decimal(0)},
        )
        group["nodes"].add(line[node_key])
        group["seconds"] += int(line["quantity_seconds"])
        group["amount"] += line["amount"]
    return [
        {
            "id": g["id"],
            "name": g["name"],
            "node_count": len(g["nodes"]),
            "quantity_seconds": g["seconds"],
            "quantity_hours": (Decimal(g["seconds"]) / HOUR).quantize(HOUR_PLACES),
            "amount": g["amount"],
        }
        for g in sorted(groups.values(), key=lambda g: (g["name"], str(g["id"])))
    ]
