"""Reads for clusters, always through the tenant (docs/clusters.md): the API and the CLI reach a cluster,
its nodes and their events only from here, so another tenant's cluster is never found (404)."""

from __future__ import annotations

from typing import Any

from django.db.models import F, Prefetch, QuerySet

from apps.instances.models import Cluster, Instance, InstanceEvent

# What a cluster shows of each node: enough to reach it (its instance id and SSH connection), no more.
NODE_FIELDS = ("id", "cluster_id", "rank", "name", "state", "connection")


def clusters_of(*, tenant: Any) -> QuerySet[Cluster]:
    """The tenant's clusters with their catalog rows and their nodes (by rank): three queries for a page,
    however many clusters and nodes it holds."""
    nodes = Instance.objects.only(*NODE_FIELDS).order_by("rank")
    return (
        Cluster.objects.filter(tenant=tenant)
        .select_related("region", "instance_type")
        .prefetch_related(Prefetch("nodes", queryset=nodes))
    )


def cluster_of(*, tenant: Any, cluster_id: Any) -> Cluster | None:
    """One of the tenant's clusters, or None (another tenant's, or none by that id)."""
    return clusters_of(tenant=tenant).filter(pk=cluster_id).first()


def cluster_nodes(cluster: Cluster) -> QuerySet[Instance]:
    """The cluster's node instances, by rank."""
    return Instance.objects.filter(cluster=cluster).order_by("rank")


def cluster_events(cluster: Cluster) -> QuerySet[InstanceEvent]:
    """Every node's timeline merged, in the instance events' order (oldest first), each event with its
    node's `rank` (the instance id is the event's own `instance_id`)."""
    return InstanceEvent.objects.filter(instance__cluster=cluster).annotate(rank=F("instance__rank"))
