"""Reconcile one instance with its region's cluster: read desired state, read the cluster, apply the
difference, record what is observed. Level-triggered and idempotent: safe to run any number of times,
from the on-commit task, the operator's watch, or the periodic resync."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from apps.catalog.models import GpuType
from apps.instances import services
from apps.instances.kube import manifests, names, observe
from apps.instances.kube.client import api_client
from apps.instances.kube.cluster import Cluster
from apps.instances.kube.specs import InstancePodSpec, namespace_spec_for, spec_from_instance
from apps.instances.models import DesiredState, Instance
from apps.instances.states import Observation, State
from apps.quotas.services import quota_for

logger = logging.getLogger(__name__)


def load_instance(instance_id: Any) -> Instance | None:
    return (
        Instance.objects.select_related("tenant", "region", "gpu_type", "instance_type")
        .prefetch_related("ssh_keys")
        .filter(pk=instance_id)
        .first()
    )


def ensure_namespace(cluster: Cluster, instance: Instance) -> None:
    tenant, region = instance.tenant, instance.region
    spec = namespace_spec_for(
        tenant,
        region,
        quota_for(tenant),
        gpu_types=GpuType.objects.all(),
        gpu_quotas=tenant.gpu_quotas.all(),
    )
    for manifest in manifests.make_namespace_objects(spec):
        cluster.apply(manifest)


def _connection(
    cluster: Cluster, instance: Instance, spec: InstancePodSpec, pod: dict[str, Any]
) -> dict[str, Any]:
    service = cluster.read_service(spec.namespace, spec.name) or {}
    ports = (service.get("spec") or {}).get("ports") or []
    port = next((p.get("nodePort") for p in ports if p.get("nodePort")), None)
    host = instance.region.ssh_host or None
    node_name = (pod.get("spec") or {}).get("nodeName")
    if host is None and node_name:
        node = cluster.read_node(node_name) or {}
        addresses = {
            a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []
        }
        host = addresses.get("ExternalIP") or addresses.get("InternalIP") or node_name
    if (service.get("spec") or {}).get("type") == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if ingress:
            host, port = ingress[0].get("ip") or ingress[0].get("hostname"), 22
    return observe.connection_info(host=host, port=port)


def record_pod(instance: Instance, pod: dict[str, Any], cluster: Cluster, spec: InstancePodSpec) -> None:
    """Turn what the pod shows into an observation of the instance (no-op when nothing changed)."""
    reading = observe.read_pod(pod, now=timezone.now())
    if reading.observation is None:
        return
    connection = (
        _connection(cluster, instance, spec, pod) if reading.observation == Observation.POD_READY else None
    )
    if reading.observation == Observation.POD_READY and instance.state == State.RUNNING:
        # Still running, perhaps on a new pod on another node: keep the ssh command true.
        services.instance_update_connection(instance_id=instance.pk, connection=connection or {})
        return
    if reading.observation == Observation.POD_READY and instance.state == State.PENDING:
        services.instance_observe(instance_id=instance.pk, observation=Observation.POD_CREATED)
    services.instance_observe(
        instance_id=instance.pk,
        observation=reading.observation,
        reason=reading.reason,
        message=reading.message,
        connection=connection,
    )


def _pod_is_current(pod: dict[str, Any], instance: Instance) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(names.GENERATION_KEY) == str(instance.generation) or instance.state == State.RUNNING
    )


def reconcile(instance_id: Any) -> None:
    instance = load_instance(instance_id)
    if instance is None:
        return
    cluster = Cluster(api_client(instance.region))
    spec = spec_from_instance(instance)
    if instance.desired_state == DesiredState.RUNNING and instance.state in (
        State.PENDING,
        State.PROVISIONING,
        State.STARTING,
        State.RUNNING,
    ):
        _run(cluster, instance, spec)
    elif instance.desired_state == DesiredState.RUNNING and instance.state == State.FAILED:
        cluster.delete("Pod", spec.namespace, spec.name)  # a failed instance holds no GPU
    elif instance.desired_state == DesiredState.STOPPED:
        cluster.delete("Pod", spec.namespace, spec.name)
        if cluster.read_pod(spec.namespace, spec.name) is None:
            services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE)
    elif instance.desired_state == DesiredState.TERMINATED:
        for kind, name in (
            ("Pod", spec.name),
            ("Service", spec.name),
            ("Secret", names.ssh_secret_name(instance.pk)),
        ):
            cluster.delete(kind, spec.namespace, name)
        if cluster.read_pod(spec.namespace, spec.name) is None:
            services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE)


def _run(cluster: Cluster, instance: Instance, spec: InstancePodSpec) -> None:
    ensure_namespace(cluster, instance)
    cluster.apply(manifests.make_ssh_secret(spec))
    cluster.apply(manifests.make_service(spec))
    pod = cluster.read_pod(spec.namespace, spec.name)
    if pod is not None and observe.disrupted(pod):
        # Its node is gone, or it was evicted: the pod goes, the next pass creates one on a node that fits.
        cluster.delete("Pod", spec.namespace, spec.name)
        return
    if pod is not None and not _pod_is_current(pod, instance):
        # A restart: the old pod goes; the next pass (its deletion event, or the resync) creates the new one.
        cluster.delete("Pod", spec.namespace, spec.name)
        return
    if pod is None:
        cluster.create_pod(manifests.make_pod(spec))
        pod = cluster.read_pod(spec.namespace, spec.name)
    if pod is not None:
        record_pod(instance, pod, cluster, spec)
