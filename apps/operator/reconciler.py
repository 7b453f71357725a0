"""Reconcile one instance with its region's cluster: read desired state, read the cluster, apply the
difference, record what is observed. Level-triggered and idempotent: safe to run any number of times,
from the on-commit task, the operator's watch, or the periodic resync."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from functools import partial
from typing import Any, NamedTuple

from django.conf import settings
from django.utils import timezone
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

from apps.instances import services
from apps.instances.cluster_states import ClusterState
from apps.instances.metrics import timed_reconcile
from apps.instances.models import Cluster as ClusterRow
from apps.instances.models import DesiredState, Instance
from apps.instances.states import FailureReason, Observation, State
from apps.operator import (
    applied,
    cluster_nodes,
    concurrently,
    host_keys,
    manifests,
    names,
    observe,
    reconcile_clusters,
    tenant_namespaces,
)
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.observed import Lookup, Observed
from apps.operator.specs import (
    InstancePodSpec,
    claim_spec_for,
    cluster_node_spec_for,
    spec_from_instance,
)
from apps.storage import services as storage
from apps.storage.models import Volume, VolumeState
from apps.tenants.models import TenantStatus

logger = logging.getLogger(__name__)


def _loading() -> Any:
    return Instance.objects.select_related(
        "tenant", "region", "gpu_type", "instance_type", "cluster"
    ).prefetch_related("ssh_keys", "volume_attachments__volume__tenant")


def load_instance(instance_id: Any) -> Instance | None:
    return _loading().filter(pk=instance_id).first()


def load_for_pod(instance_id: Any) -> Instance | None:
    """What a pod event needs to record what it shows: the row with its tenant and region, in one query.
    Enough for `record_pod` with `pod_ref`; a reconcile loads the instance in full itself."""
    return Instance.objects.select_related("tenant", "region").filter(pk=instance_id).first()


class PodRef(NamedTuple):
    namespace: str
    name: str


def pod_ref(instance: Instance) -> PodRef:
    """Where the instance's pod and Service are (reads instance.tenant)."""
    return PodRef(
        names.namespace_name(instance.tenant_id, instance.tenant.slug),
        names.instance_object_name(instance.pk),
    )


def load_instances(instance_ids: list[Any]) -> list[Instance]:
    """Several at once, in the given order (the resync loads a batch in a few queries, not three each)."""
    found = {str(instance.pk): instance for instance in _loading().filter(pk__in=instance_ids)}
    return [found[str(pk)] for pk in instance_ids if str(pk) in found]


def _connection(
    cluster: Cluster,
    instance: Instance,
    spec: InstancePodSpec | PodRef,
    pod: dict[str, Any],
    seen: Lookup | None,
) -> dict[str, Any]:
    """From the stores or the resync's lists (`seen`); what they lack (a Service applied a moment ago by
    another process) is read, once per process and object (recent.py)."""
    found = seen.service(spec.namespace, spec.name) if seen else None
    service = found or cluster.recent_service(spec.namespace, spec.name) or {}
    ports = (service.get("spec") or {}).get("ports") or []
    port = next((p.get("nodePort") for p in ports if p.get("nodePort")), None)
    host = instance.region.ssh_host or None
    node_name = (pod.get("spec") or {}).get("nodeName")
    if host is None and node_name:
        node = (seen.node(node_name) if seen else None) or cluster.recent_node(node_name) or {}
        addresses = {
            a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []
        }
        host = addresses.get("ExternalIP") or addresses.get("InternalIP") or node_name
    if (service.get("spec") or {}).get("type") == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if ingress:
            host, port = ingress[0].get("ip") or ingress[0].get("hostname"), 22
    host_key = host_keys.host_public_key(instance.pk, secret=settings.SECRET_KEY or "")
    return observe.connection_info(host=host, port=port, host_key=host_key)


def record_pod(
    instance: Instance,
    pod: dict[str, Any],
    cluster: Cluster,
    spec: InstancePodSpec | PodRef,
    seen: Lookup | None = None,
) -> None:
    """Turn what the pod shows into an observation of the instance (no-op when nothing changed). Becoming
    running, the common case, is one UPDATE and its timeline line (services.instance_observe_running)."""
    reading = observe.read_pod(pod, now=timezone.now())
    if reading.observation is None:
        return
    ready = reading.observation == Observation.POD_READY
    connection = _connection(cluster, instance, spec, pod, seen) if ready else None
    if reading.observation == Observation.POD_READY and instance.state == State.RUNNING:
        # Still running, perhaps on a new pod on another node: keep the ssh command true.
        if connection and connection != instance.connection:
            _confirm(cluster)
            services.instance_update_connection(instance_id=instance.pk, connection=connection)
        return
    _confirm(cluster)  # an old row could take an old generation's pod for the current one
    if ready and services.instance_observe_running(instance=instance, connection=connection):
        return
    if reading.observation == Observation.POD_READY and instance.state == State.PENDING:
        services.instance_observe(instance_id=instance.pk, observation=Observation.POD_CREATED)
    services.instance_observe(
        instance_id=instance.pk,
        observation=reading.observation,
        reason=reading.reason,
        message=reading.message,
        connection=connection,
        started_at=reading.started_at,
    )


def _pod_is_current(pod: dict[str, Any], instance: Instance) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (
        annotations.get(names.GENERATION_KEY) == str(instance.generation) or instance.state == State.RUNNING
    )


RUN_STATES = (State.PENDING, State.PROVISIONING, State.STARTING, State.RUNNING)


def _unchanged(instance: Instance) -> bool:
    """Whether the row still says what a batch read earlier: what the reconciler acts on (one small query,
    where reading it again takes three)."""
    return Instance.objects.filter(
        pk=instance.pk,
        state=instance.state,
        desired_state=instance.desired_state,
        generation=instance.generation,
    ).exists()


def _confirm(cluster: Cluster) -> None:
    if isinstance(cluster, CheckedCluster):
        cluster.confirm()


class Stale(Exception):
    """The row a resync's batch read has changed since (stopped, started, restarted, observed)."""


class CheckedCluster(Cluster):
    """The cluster as a reconcile from a resync's batch sees it: before its first write (an apply, a pod
    created or deleted; record_pod: an observation recorded) the row the batch read is checked to be
    unchanged, once, and Stale raised when it is not, so that a stop or start made meanwhile is never
    undone. A steady-state pass writes nothing and so costs no query. The check runs in the reconcile's own
    thread: `_converge` makes it before the requests it sends alongside, whose pool threads hold no database
    connection."""

    def __init__(self, api: Any, instance: Instance):
        super().__init__(api)
        self._instance = instance
        self._confirmed = False
        self._lock = threading.Lock()

    def confirm(self) -> None:
        with self._lock:
            if not self._confirmed:
                if not _unchanged(self._instance):
                    raise Stale(str(self._instance.pk))
                self._confirmed = True

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.confirm()
        return super().apply(manifest)

    def create_pod(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        self.confirm()
        return super().create_pod(manifest)

    def create_as_is(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        self.confirm()
        return super().create_as_is(manifest)

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        self.confirm()
        return super().delete(kind, namespace, name)

    def force_delete_pod(self, namespace: str, name: str) -> bool:
        self.confirm()
        return super().force_delete_pod(namespace, name)


@timed_reconcile("instance")
def reconcile(
    instance_id: Any,
    seen: Observed | None = None,
    loaded: Instance | None = None,
    *,
    fresh: Instance | None = None,
) -> None:
    """`seen`: the resync's lists (observed.py), read instead of one GET per object; `loaded`: the instance
    as the resync's batch read it a while ago, acted on only if the row has not changed since (checked
    before the first write: CheckedCluster); `fresh`: the instance as the caller read it just now
    (load_instance), used as it is."""
    if fresh is None and loaded is not None:
        try:
            _reconcile(CheckedCluster(api_client(loaded.region), loaded), loaded, seen)
            return
        except Stale:
            pass  # stopped, started, restarted or observed since: acting on the old row could undo that
    instance = fresh or load_instance(instance_id)
    if instance is None:
        return
    _reconcile(Cluster(api_client(instance.region)), instance, seen)


def _reconcile(cluster: Cluster, instance: Instance, seen: Observed | None) -> None:
    spec = spec_from_instance(instance)
    if instance.desired_state == DesiredState.RUNNING and instance.state in RUN_STATES:
        _run(cluster, instance, spec, seen)
    elif instance.desired_state == DesiredState.RUNNING and instance.state == State.FAILED:
        if not _known_gone(instance, spec, seen, State.FAILED):
            cluster.delete("Pod", spec.namespace, spec.name)  # a failed instance holds no GPU
    elif instance.desired_state == DesiredState.STOPPED:
        if _known_gone(instance, spec, seen, State.STOPPED):
            return
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
            if instance.cluster_id is not None and cluster_terminated(instance.cluster_id):
                reconcile_clusters.remove(cluster, spec.namespace, instance.cluster_id)


def cluster_terminated(cluster_id: Any) -> bool:
    return ClusterRow.objects.filter(pk=cluster_id, state=ClusterState.TERMINATED).exists()


def _known_gone(instance: Instance, spec: InstancePodSpec, seen: Observed | None, settled: State) -> bool:
    """A stopped (or failed) instance whose pod the resync's snapshot does not show: nothing to delete or
    record (a steady-state resync sends no DELETE and GET for each). Without a snapshot, or with a pod in
    it, the pod is deleted and, for a stop, its absence read."""
    return seen is not None and instance.state == settled and seen.pod(spec.namespace, spec.name) is None


def _run(cluster: Cluster, instance: Instance, spec: InstancePodSpec, seen: Observed | None) -> None:
    try:
        _converge(cluster, instance, spec, seen)
    except (ApiException, QuotaRefused) as exc:
        if isinstance(exc, ApiException) and exc.status != 404:
            raise
        # The tenant's namespace objects are applied when the tenant or its quota changes and by the resync
        # (tenant_namespaces.py), not on every launch. A namespace that is missing (404: only applying into,
        # or creating a pod in, a namespace that is gone answers 404 here) or whose ResourceQuota refuses
        # the pod (older than the tenant's quota) gets them all now, and the pass runs once more.
        applied.cache.forget_namespace(cluster.cluster_id, spec.namespace)
        tenant_namespaces.ensure(cluster, instance.tenant, instance.region, refresh=True)
        _converge(cluster, instance, spec, None)


def _converge(cluster: Cluster, instance: Instance, spec: InstancePodSpec, seen: Observed | None) -> None:
    # The Service and the Secret go out alongside the pod's creation, not before it: a launch waits for
    # about one round trip, not four. A pod whose Secret is not there yet waits for it (the kubelet
    # retries the mount), and a failed apply still fails this pass once the pod's part is done.
    if instance.cluster_id is not None:
        reconcile_clusters.ensure(cluster, cluster_node_spec_for(instance, ssh_port=spec.ssh_port))
    secret_due = _secret_due(instance, seen.pod(spec.namespace, spec.name) if seen else None, seen)
    service_manifest = manifests.make_service(spec)
    service_due = not cluster.is_applied(service_manifest)
    if not service_due and secret_due is None:
        # Nothing to send (a running instance's usual pass): no pool thread handed work it would not do.
        _converge_pod(cluster, instance, spec, seen)
        return
    # Decided here, and checked here, not in the pool thread that sends them (it holds no database
    # connection): that thread writes nothing this thread has not confirmed.
    _confirm(cluster)
    access = partial(_ensure_access, cluster, spec, seen, service_manifest, service_due)
    with concurrently.calls(access, [secret_due]):
        _converge_pod(cluster, instance, spec, seen)


FORCE, CHANGED = "force", "changed"


def _secret_due(instance: Instance, pod: dict[str, Any] | None, seen: Observed | None) -> str | None:
    """Whether the SSH Secret is to be applied: FORCE whenever a pod may be made now (it mounts the Secret,
    and nothing else tells whether someone deleted it: the operator may not list Secrets), CHANGED while the
    instance is not running yet (unless this process applied the same Secret lately), else not at all (a
    running pod has its keys, which never change after launch)."""
    if seen is None or pod is None or _must_go(pod, instance):
        return FORCE
    return CHANGED if instance.state != State.RUNNING else None


def _ensure_access(
    cluster: Cluster,
    spec: InstancePodSpec,
    seen: Observed | None,
    service_manifest: dict[str, Any],
    service_due: bool,
    secret_due: str | None,
) -> None:
    """The instance's Service (when `service_due`: not applied lately), then its SSH Secret owned by that
    Service, so that Kubernetes deletes the Secret with the Service (the owner reference needs the Service's
    uid: hence this order)."""
    service = None
    if service_due:
        service = cluster.apply(service_manifest)
        secret_due = FORCE  # a Service made again has a new uid: its Secret is gone or must be re-owned
    if secret_due is None:
        return
    if service is None:
        service = (seen.service if seen else cluster.recent_service)(spec.namespace, spec.name)
    if service is None or not (service.get("metadata") or {}).get("uid"):
        service = cluster.apply(service_manifest)  # listed a moment ago, gone since
    meta = service["metadata"]
    secret = manifests.owned_by(
        manifests.make_ssh_secret(spec), api_version="v1", kind="Service", name=meta["name"], uid=meta["uid"]
    )
    if secret_due == FORCE:
        cluster.apply(secret)
    else:
        cluster.apply_changed(secret)


class QuotaRefused(Exception):
    """The namespace's ResourceQuota refused the pod, and no pod of that name exists."""


def _converge_pod(cluster: Cluster, instance: Instance, spec: InstancePodSpec, seen: Observed | None) -> None:
    pod = seen.pod(spec.namespace, spec.name) if seen else None
    if pod is not None and _must_go(pod, instance):
        # Read before deleting: the resync's list is older than this decision, and pod names do not change
        # across restarts.
        pod, seen = cluster.read_pod(spec.namespace, spec.name), None
    if pod is None and not _claims_bound(cluster, instance):
        # A pod on an unbound claim would sit unschedulable (and be failed as no_capacity): wait for the
        # binding; the volume's `bound` observation reconciles this instance again.
        return
    if pod is None:
        pod, seen = (
            _create_or_read(cluster, instance, spec),
            None,
        )  # the lists lack the pod's Service and node
    if pod is not None and _moved_off_a_lost_node(cluster, instance, spec, pod, seen):
        return
    if pod is not None and _must_go(pod, instance):
        if instance.cluster_id is not None and observe.disrupted(pod) and instance.state == State.RUNNING:
            # A cluster's node lost its machine: the node fails (node_lost) and its cluster, degraded, acts
            # as its on_node_failure says (cluster_services.cluster_settle): a replacement is a start of
            # this node, in the gang and on the cluster's block, so the cluster knows and says so.
            _confirm(cluster)
            services.instance_observe(
                instance_id=instance.pk,
                observation=Observation.FAILED,
                reason=FailureReason.NODE_LOST,
                message="The node's machine was lost (its pod was disrupted).",
            )
        # Its node is gone or it was evicted, or the instance restarted: the pod goes, and the next pass (its
        # deletion event, or the resync) creates one, on a node that fits.
        cluster.delete("Pod", spec.namespace, spec.name)
        return
    if pod is not None:
        record_pod(instance, pod, cluster, spec, seen)
        if instance.cluster_id is not None:
            reconcile_clusters.publish_addresses(cluster, cluster_node_spec_for(instance), pod)


def _moved_off_a_lost_node(
    cluster: Cluster, instance: Instance, spec: InstancePodSpec, pod: dict[str, Any], seen: Lookup | None
) -> bool:
    """A single instance whose pod's machine has not been Ready for INSTANCE_NODE_LOST_AFTER_SECONDS: billing
    stops at the machine's last sign of life (services.instance_node_lost) and its pod is removed at once
    (grace 0: the lost kubelet cannot confirm a graceful end, and the pod's name is needed for the new one,
    which the next pass creates on a ready machine). The node is read from the resync's list or the watch's
    store when given, else the short-lived cache. True when it moved the instance."""
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name or instance.cluster_id is not None or instance.state not in services.ON_A_NODE:
        return False
    node = (seen.node(node_name) if seen else None) or cluster.recent_node(node_name)
    after = timedelta(seconds=settings.INSTANCE_NODE_LOST_AFTER_SECONDS)
    lost = observe.lost_node(node, now=timezone.now(), after=after)
    if lost is None:
        return False
    _confirm(cluster)
    services.instance_node_lost(instance_id=instance.pk, node=lost.name, zone=lost.zone, lost_at=lost.lost_at)
    cluster.force_delete_pod(spec.namespace, spec.name)
    return True


def _create_or_read(cluster: Cluster, instance: Instance, spec: InstancePodSpec) -> dict[str, Any] | None:
    """Create the pod with no read first (a launch's pod does not exist yet); read it only when the
    creation conflicts: 409 (it exists), or 403 from the namespace's ResourceQuota, which refuses a second
    pod before the name clash could answer 409."""
    try:
        if instance.cluster_id is None:
            created = cluster.create_pod(manifests.make_pod(spec))
        else:
            # A cluster's node: in its gang, which the client's models cannot carry (Cluster.create_as_is).
            node = cluster_node_spec_for(instance, ssh_port=spec.ssh_port)
            created = cluster.create_as_is(cluster_nodes.make_node_pod(manifests.make_pod(spec), node))
    except ApiException as exc:
        if exc.status != 403:
            raise
        existing = cluster.read_pod(spec.namespace, spec.name)
        if existing is None:
            raise QuotaRefused(exc.reason or "forbidden") from exc
        return existing
    return created or cluster.read_pod(spec.namespace, spec.name)


def _must_go(pod: dict[str, Any], instance: Instance) -> bool:
    return observe.disrupted(pod) or not _pod_is_current(pod, instance)


# ---- volumes --------------------------------------------------------------------------------------------


def _claims_bound(cluster: Cluster, instance: Instance) -> bool:
    """Apply the claims of the instance's volumes (idempotent); True when every one is bound."""
    bound = True
    for attachment in instance.volume_attachments.all():
        claim = ensure_claim(cluster, attachment.volume)
        bound = bound and claim_phase(claim) == "Bound"
    return bound


def ensure_claim(cluster: Cluster, volume: Volume) -> dict[str, Any] | None:
    """Create the volume's claim, or grow it to the volume's size (server-side apply). Only a bound claim
    may grow: an unbound one is left to its provisioner, and grown on a later pass."""
    spec = claim_spec_for(volume)
    claim = cluster.read_pvc(spec.namespace, spec.name)
    if claim is None and volume.state != VolumeState.CREATING:
        return None  # it existed and is gone: a new, empty claim would hide the loss (see reconcile_volume)
    if claim is not None and claim_phase(claim) != "Bound":
        return claim
    if claim is None or (_gib(_requests(claim).get("storage")) or 0) < spec.size_gib:
        cluster.apply(manifests.make_pvc(spec))
        claim = cluster.read_pvc(spec.namespace, spec.name)
    return claim


def _requests(claim: dict[str, Any]) -> dict[str, Any]:
    return ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}


def _gib(quantity: Any) -> int | None:
    return int(parse_quantity(quantity) // (1 << 30)) if quantity else None


def claim_phase(claim: dict[str, Any] | None) -> str | None:
    return ((claim or {}).get("status") or {}).get("phase")


def claim_capacity_gib(claim: dict[str, Any] | None) -> int | None:
    return _gib((((claim or {}).get("status") or {}).get("capacity") or {}).get("storage"))


@timed_reconcile("volume")
def reconcile_volume(volume_id: Any) -> None:
    """Create, grow or delete the volume's claim and record what it shows. Level-triggered: the on-commit
    task and every operator resync (leader only) call it; each pass converges a step."""
    volume = Volume.objects.select_related("tenant", "region").filter(pk=volume_id).first()
    if volume is None or volume.state in (VolumeState.DELETED, VolumeState.FAILED):
        return
    cluster = Cluster(api_client(volume.region))
    spec = claim_spec_for(volume)
    if volume.state == VolumeState.DELETING:
        # The claim's protection finalizer keeps it until no pod mounts it; then it goes, and with it the PV.
        cluster.delete("PersistentVolumeClaim", spec.namespace, spec.name)
        if cluster.read_pvc(spec.namespace, spec.name) is None:
            storage.volume_observe(volume_id=volume.pk, observation="gone")
        return
    if volume.tenant.status == TenantStatus.CLOSED:
        return  # its namespace is being collected (gc.py); a claim made now would bring it back
    if volume.state == VolumeState.CREATING:
        tenant_namespaces.ensure(cluster, volume.tenant, volume.region)  # the claim may be the first object
    claim = ensure_claim(cluster, volume)
    phase, capacity = claim_phase(claim), claim_capacity_gib(claim)
    if claim is None or phase == "Lost":
        message = "The claim lost its volume." if claim else "The claim was deleted from the cluster."
        storage.volume_observe(volume_id=volume.pk, observation="lost", message=message)
    elif phase == "Bound" and volume.state == VolumeState.CREATING:
        storage.volume_observe(volume_id=volume.pk, observation="bound", capacity_gib=capacity)
    elif phase == "Bound" and volume.state == VolumeState.RESIZING and (capacity or 0) >= volume.size_gib:
        storage.volume_observe(volume_id=volume.pk, observation="resized", capacity_gib=capacity)
