"""A pod can be Ready before the Service sent alongside it is in the leader's store (a cold start's Services
queue behind its pods): the instance is then recorded running without an SSH port. When the Service is
stored, its pod is handled again (operator_loop._service_changed) and the connection gets the port then,
not at the next resync.

The cluster behind `Cluster` is an address where nothing listens: the stores answer for Service and node,
and its read of the Service answers as the apiserver does before the Service is created (nothing)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from apps.instances.models import Instance
from apps.operator.operator_loop import _service_changed
from apps.operator.stores import ClusterStores
from apps.operator.watcher import PodHandler, Queued
from tests.conftest import Actor
from tests.operator.ready_pods import NODE_PORT, nowhere, starting_with_ready_pod, stores_with_service

pytestmark = pytest.mark.django_db


def test_a_service_stored_after_its_pod_was_ready_gives_the_instance_its_port(
    make_instance: Any, tenant_owner: Actor
) -> None:
    starting = starting_with_ready_pod(make_instance, tenant_owner)
    made, pod, namespace, name = starting.made, starting.pod, starting.namespace, starting.name
    cluster = nowhere()
    # Not created yet: what the apiserver answers (404) for a Service still queued behind its pod.
    cluster.read_service = lambda namespace, name: None  # type: ignore[method-assign]
    watched = ClusterStores(cluster, "test")
    pods = Queued(PodHandler(made.region_id, cluster, lookup=lambda: watched), "pods@test", workers=1)
    watched.pods.apply("ADDED", pod)
    node = stores_with_service(namespace, name).nodes["gpu-node-1"]
    watched.nodes.apply("ADDED", node)

    pods.handle("MODIFIED", pod)  # Ready, and no Service stored yet
    assert Instance.objects.get(pk=made.pk).state == "running"
    assert Instance.objects.get(pk=made.pk).connection.get("port") is None

    service = stores_with_service(namespace, name).services[(namespace, name)]
    watched.services.apply("ADDED", service)
    _service_changed(watched, pods, "ADDED", service)

    assert len(pods.queue) == 1
    queued = pods.queue.get(threading.Event(), poll=0)
    assert queued is not None
    key, (kind, obj, measured) = queued
    assert key == str(made.pk) and obj is pod and not measured  # the pod again, under its own key
    pods.handle(kind, obj)
    assert Instance.objects.get(pk=made.pk).connection["port"] == NODE_PORT
