"""A Ready pod of a starting instance as the apiserver sends it, and the stores a leader would answer its
Service and node from, for the tests of recording `running` (the pod handler, the Service's arrival).
The cluster `nowhere` is an address where nothing listens: any request it were asked to make fails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from kubernetes import client

from apps.instances.models import Instance
from apps.operator import names
from apps.operator.cluster import Cluster
from apps.operator.observed import Observed
from tests.conftest import Actor

NODE_PORT = 31022


def nowhere() -> Cluster:
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # the discard port: nothing answers
    return Cluster(client.ApiClient(configuration))


def ready_pod(namespace: str, name: str, started: Any) -> dict[str, Any]:
    stamp = started.isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"namespace": namespace, "name": name, "creationTimestamp": stamp},
        "spec": {"nodeName": "gpu-node-1"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "main", "state": {"running": {"startedAt": stamp}}}],
        },
    }


def stores_with_service(namespace: str, name: str) -> Observed:
    service = {
        "metadata": {"namespace": namespace, "name": name, "uid": "u"},
        "spec": {"type": "NodePort", "ports": [{"name": "ssh", "port": 22, "nodePort": NODE_PORT}]},
    }
    node = {
        "metadata": {"name": "gpu-node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.1.2.3"}]},
    }
    return Observed(services={(namespace, name): service}, nodes={"gpu-node-1": node})


@dataclass(frozen=True)
class StartingPod:
    """A starting instance whose container started 30 s ago (the billing clock runs) and its Ready pod,
    labelled and annotated as the operator makes it."""

    made: Instance
    started: datetime
    namespace: str
    name: str
    pod: dict[str, Any]


def starting_with_ready_pod(make_instance: Any, actor: Actor) -> StartingPod:
    started = timezone.now().replace(microsecond=0) - timedelta(seconds=30)
    made = make_instance(actor.tenant, created_by=actor.user, state="starting", billing_since=started)
    namespace = names.namespace_name(made.tenant_id, actor.tenant.slug)
    name = names.instance_object_name(made.pk)
    pod = ready_pod(namespace, name, started)
    pod["metadata"]["labels"] = {names.INSTANCE_LABEL: str(made.pk)}
    pod["metadata"]["annotations"] = {names.GENERATION_KEY: str(made.generation)}
    return StartingPod(made=made, started=started, namespace=namespace, name=name, pod=pod)
