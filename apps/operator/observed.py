"""What a resync reads of the cluster, instead of a GET per instance: a snapshot of the operator's
watch-fed stores (stores.py; operator_loop.resync builds it), or one list of each kind (`take`).

A full resync used to read every instance's pod, Service and node one request at a time (plus re-apply its
namespace): minutes for thousands of pods (docs/benchmarks.md). `take` lists the managed pods and Services
and the nodes once; the reconciler looks them up here. The lists are as of the start of the resync: anything
that changes during it also arrives through the pod watch, and every step the reconciler takes from a stale
view is idempotent (a pod created twice answers 409, one deleted twice 404). Secrets are not listed: the
operator may not list Secrets (a cluster-wide list reads every Secret of the cluster), and needs not
(reconciler._secret_due).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.operator import names
from apps.operator.cluster import Cluster, Manifest
from apps.operator.gc import list_json

Ref = tuple[str, str]  # namespace, name


def _by_ref(items: list[Manifest]) -> dict[Ref, Manifest]:
    return {
        ((i.get("metadata") or {}).get("namespace", ""), (i.get("metadata") or {}).get("name", "")): i
        for i in items
    }


class Lookup(Protocol):
    """Where the reconciler finds an instance's Service and its pod's node without a GET: the resync's
    snapshot (Observed) or the leader's stores (stores.ClusterStores)."""

    def service(self, namespace: str, name: str) -> Manifest | None: ...

    def node(self, name: str) -> Manifest | None: ...


@dataclass
class Observed:
    pods: dict[Ref, Manifest] = field(default_factory=dict)
    services: dict[Ref, Manifest] = field(default_factory=dict)
    nodes: dict[str, Manifest] = field(default_factory=dict)

    def pod(self, namespace: str, name: str) -> Manifest | None:
        return self.pods.get((namespace, name))

    def service(self, namespace: str, name: str) -> Manifest | None:
        return self.services.get((namespace, name))

    def node(self, name: str) -> Manifest | None:
        return self.nodes.get(name)


def take(cluster: Cluster) -> Observed:
    core, selector = cluster.core, names.managed_selector()

    def items(fn: Any, **kwargs: Any) -> list[Manifest]:
        return list(list_json(fn, **kwargs).get("items") or [])

    return Observed(
        pods=_by_ref(items(core.list_pod_for_all_namespaces, label_selector=selector)),
        services=_by_ref(items(core.list_service_for_all_namespaces, label_selector=selector)),
        nodes={(n.get("metadata") or {}).get("name", ""): n for n in items(core.list_node)},
    )
