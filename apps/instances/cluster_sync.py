"""Keep a cluster's state from its nodes': called in the transaction of every node's timeline line.

Lock order: a node's row (its change), then the cluster's row. Nothing here locks another node: what must
happen to the others (fail them all, replace one) is announced once committed (signals.cluster_needs_settling)
and done by cluster_services.cluster_settle in transactions of its own.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.instances.cluster_states import ClusterState, summarize
from apps.instances.models import Cluster, Instance
from apps.instances.signals import cluster_needs_settling

# Node states after which the cluster must act as a whole (fail the rest, or replace the lost one).
_SETTLE_AFTER = frozenset({ClusterState.FAILED, ClusterState.DEGRADED})


def cluster_sync(cluster_id: Any, *, reason: str = "", message: str = "") -> Cluster | None:
    """Recompute the cluster's state from its nodes (locked, one query for the nodes); returns it."""
    cluster = Cluster.objects.select_for_update().filter(pk=cluster_id).first()
    if cluster is None:
        return None
    nodes = list(Instance.objects.filter(cluster_id=cluster_id).values_list("state", "failure_reason"))
    new = summarize(
        desired=cluster.desired_state,
        current=cluster.state,
        node_states=[state for state, _ in nodes],
        ran=cluster.ran_at is not None,
    )
    now = timezone.now()
    changed = new != cluster.state
    if new == ClusterState.RUNNING and cluster.ran_at is None:
        cluster.ran_at = now
    if new == ClusterState.FAILED and not cluster.failure_reason:
        failed = next((r for s, r in nodes if s == "failed" and r), "") or reason or "internal"
        cluster.failure_reason = failed
        cluster.state_message = (message or f"A node failed ({failed}) before the cluster ran.")[:500]
    if new == ClusterState.TERMINATED and cluster.terminated_at is None:
        cluster.terminated_at = now
    if changed:
        cluster.state, cluster.state_changed_at = new, now
    cluster.save()
    if new in _SETTLE_AFTER and (changed or new == ClusterState.DEGRADED):
        settled_id = str(cluster.pk)
        transaction.on_commit(lambda: cluster_needs_settling.send(sender=Cluster, cluster_id=settled_id))
    return cluster
