"""A cluster's auto-stop and maximum runtime: the whole cluster stops, never one node (a node stopped alone
would only degrade it and be replaced). Run with the instances' timer sweep
(tasks.enforce_instance_timers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from apps.instances import cluster_services, services
from apps.instances.cluster_states import ClusterState
from apps.instances.models import Cluster, DesiredState
from apps.instances.states import Action

_RUNS = (ClusterState.PROVISIONING, ClusterState.STARTING, ClusterState.RUNNING, ClusterState.DEGRADED)


def _due(cluster: Cluster, now: Any) -> str | None:
    """auto_stop_after counts from when every node ran (this run); max_runtime is the billed seconds of the
    longest-billed node in total, as an instance's is."""
    if (
        cluster.auto_stop_after
        and cluster.ran_at
        and cluster.ran_at + timedelta(seconds=cluster.auto_stop_after) <= now
    ):
        return "auto_stop_after"
    if cluster.max_runtime:
        billed = max((node.billed_seconds(now) for node in cluster.nodes.all()), default=0)
        if billed >= cluster.max_runtime:
            return "max_runtime"
    return None


def enforce_cluster_timers(now: Any = None) -> int:
    """Stop the clusters past a timer; returns how many."""
    now = now or timezone.now()
    candidates = Cluster.objects.filter(state__in=list(_RUNS), desired_state=DesiredState.RUNNING).filter(
        Q(auto_stop_after__isnull=False) | Q(max_runtime__isnull=False)
    )
    stopped = 0
    for cluster in candidates.prefetch_related("nodes"):
        reason = _due(cluster, now)
        if reason is None:
            continue
        try:
            cluster_services.cluster_act(actor=None, cluster=cluster, action=Action.STOP, reason=reason)
            stopped += 1
        except services.InvalidState:
            continue  # its state changed meanwhile
    return stopped
