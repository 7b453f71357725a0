"""A cluster's own objects, made as its nodes are reconciled (cluster_nodes.py builds them).

Each node's reconcile makes sure the cluster's headless Service exists (applied), and under it, owned by it,
the ConfigMap with the hostfile, the NetworkPolicy between the nodes and the gang's Workload, before the
node's pod is created. The ConfigMap and the Workload are created, never applied again: the Workload's
gang size is fixed for its life, and the ConfigMap gains the nodes' addresses later (publish_addresses),
which applying the first version again would take away. Deleting the Service deletes the rest
(Kubernetes' garbage collector), once the cluster is terminated.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from apps.operator import manifests
from apps.operator.cluster import Cluster
from apps.operator.cluster_nodes import (
    CLUSTER_LABEL,
    ClusterNodeSpec,
    make_cluster_policy,
    make_cluster_service,
    make_gang,
    make_hosts_config,
    object_name,
)
from apps.operator.gc import list_json

# Addresses this process last published per cluster: a node's reconcile lists the cluster's pods only while
# its own address is not among them (the cluster starting, or a node replaced).
_published: dict[str, tuple[str, ...]] = {}
# Clusters whose objects this process has made (or found) since it started, by Kubernetes cluster: a node's
# reconcile sends nothing for them after the first.
_ensured: set[tuple[str, str]] = set()
_lock = threading.Lock()


def ensure(cluster: Cluster, node: ClusterNodeSpec) -> None:
    key = (cluster.cluster_id, node.cluster_id)
    with _lock:
        if key in _ensured:
            return
    service = cluster.apply(make_cluster_service(node))
    meta = service["metadata"]
    owned = partial(manifests.owned_by, api_version="v1", kind="Service", name=meta["name"], uid=meta["uid"])
    cluster.create_as_is(owned(make_hosts_config(node)))  # None: it exists (perhaps with addresses)
    cluster.create_as_is(owned(make_gang(node)))
    cluster.apply(owned(make_cluster_policy(node)))
    with _lock:
        _ensured.add(key)


def publish_addresses(cluster: Cluster, node: ClusterNodeSpec, pod: dict[str, Any] | None) -> bool:
    """Once every node's pod has an address, write them into the ConfigMap (`node_ips`, `env`). True when
    written now."""
    address = ((pod or {}).get("status") or {}).get("podIP")
    if not address:
        return False
    with _lock:
        known = _published.get(node.cluster_id, ())
    if len(known) == node.nodes and known[node.rank] == address:
        return False
    listed = list_json(
        cluster.core.list_namespaced_pod, node.namespace, label_selector=f"{CLUSTER_LABEL}={node.cluster_id}"
    )
    by_host = {
        (p.get("spec") or {}).get("hostname"): (p.get("status") or {}).get("podIP")
        for p in listed["items"]
        if not (p.get("metadata") or {}).get("deletionTimestamp")
    }
    ips = tuple(by_host.get(host) or "" for host in node.hostnames)
    if not all(ips):
        return False
    service = cluster.recent_service(node.namespace, node.name) or cluster.apply(make_cluster_service(node))
    meta = service["metadata"]
    config = manifests.owned_by(
        make_hosts_config(node, ips), api_version="v1", kind="Service", name=meta["name"], uid=meta["uid"]
    )
    cluster.apply(config)
    with _lock:
        _published[node.cluster_id] = ips
    return True


def remove(cluster: Cluster, namespace: str, cluster_id: Any) -> None:
    """The cluster is terminated: its Service goes, and with it what it owns."""
    with _lock:
        _published.pop(str(cluster_id), None)
        _ensured.discard((cluster.cluster_id, str(cluster_id)))
    cluster.delete("Service", namespace, object_name(cluster_id))
