"""Volumes against the sandbox, nothing mocked but the storage driver: the real operator loop (in-process
threads, leading us-east-1 on the test database) reconciles claims in the tenant's namespace, and
sandbox/provisioner.py, the simulated provisioner sandbox.sh runs (no CSI driver can run on kwok nodes),
binds and grows them. The test acts only through the API and reads the cluster.

The operator uses `gc_known_tenants_only`: the sandbox is shared with other test runs and their databases.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.instances.models import Instance
from apps.operator import names
from apps.operator.manifests import RESOURCE_QUOTA
from apps.operator.operator_loop import Operator, OperatorConfig
from apps.quotas.services import quota_for
from apps.storage.models import Volume, VolumeEvent
from apps.tenants.roles import Role
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, wait_for
from tests.storage.volume_helpers import VolumeApi

pytestmark = pytest.mark.django_db(transaction=True)

FAST = OperatorConfig(
    resync_seconds=1.0, lock_retry_seconds=0.5, watch_timeout_seconds=3, gc_known_tenants_only=True
)
TIMEOUT = 90.0  # a bound for a hung cluster, not a performance assertion
STORAGE_CLASS = "sandbox-standard"


@pytest.fixture
def tenant(
    sandbox: Sandbox, make_actor: Callable[..., Any], kube_clients: dict[str, client.ApiClient]
) -> Iterator[SandboxTenant]:
    connect(seed().us_east, sandbox)
    sandbox_tenant = SandboxTenant(make_actor(Role.OWNER), kube_clients)
    sandbox_tenant.regions.add("us-east-1")
    yield sandbox_tenant
    sandbox_tenant.cleanup()


@pytest.fixture
def operator(tenant: SandboxTenant) -> Iterator[Operator]:
    running = Operator(dataclasses.replace(FAST), regions=["us-east-1"]).start()
    wait_for(lambda: "us-east-1" in running.leading(), what="the operator to lead us-east-1", timeout=TIMEOUT)
    yield running
    running.shutdown()


def claim_of(tenant: SandboxTenant, volume_id: str) -> client.V1PersistentVolumeClaim | None:
    try:
        return tenant.core().read_namespaced_persistent_volume_claim(
            names.volume_claim_name(volume_id), tenant.namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def state_of(api: VolumeApi, volume_id: str) -> str:
    return api.volume(volume_id)["state"]


def pods_of(tenant: SandboxTenant, instance_id: str) -> list[client.V1Pod]:
    selector = f"{names.INSTANCE_LABEL}={instance_id}"
    return tenant.core().list_namespaced_pod(tenant.namespace, label_selector=selector).items


def running_pod(tenant: SandboxTenant, instance_id: str) -> client.V1Pod | None:
    pods = [p for p in pods_of(tenant, instance_id) if not p.metadata.deletion_timestamp]
    return pods[0] if len(pods) == 1 and pods[0].status.phase == "Running" else None


@contextlib.contextmanager
def cordoned(tenant: SandboxTenant, node_name: str) -> Iterator[None]:
    """The node unschedulable for the block's duration only: the sandbox is shared with other test runs,
    whose pods of the same pool then go to the pool's other nodes meanwhile."""
    core = tenant.core()
    core.patch_node(node_name, {"spec": {"unschedulable": True}})
    try:
        yield
    finally:
        core.patch_node(node_name, {"spec": {"unschedulable": None}})


def test_a_volume_lives_through_stop_start_resize_and_goes_with_terminate(
    tenant: SandboxTenant, operator: Operator
) -> None:
    api = VolumeApi(tenant.actor)
    volume = api.create(name="datasets", size_gib=10)
    volume_id = volume["id"]

    # The claim is made in the tenant's namespace and bound by the simulated provisioner.
    wait_for(lambda: state_of(api, volume_id) == "available", what="the volume to be bound", timeout=TIMEOUT)
    claim = claim_of(tenant, volume_id)
    assert claim is not None and claim.status.phase == "Bound"
    assert claim.spec.storage_class_name == STORAGE_CLASS and claim.spec.access_modes == ["ReadWriteOnce"]
    assert claim.metadata.labels[names.VOLUME_LABEL] == volume_id
    pv = tenant.core().read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.claim_ref.uid == claim.metadata.uid and pv.spec.capacity["storage"] == "10Gi"

    # An instance launched with it mounts the claim.
    launched = api.launch((volume_id, "/data"), name="trainer")
    assert launched.status_code == 201, launched.json()
    instance_id = launched.json()["id"]
    wait_for(lambda: Instance.objects.get(pk=instance_id).state == "running", what="running", timeout=TIMEOUT)
    pod = running_pod(tenant, instance_id)
    assert pod is not None
    claims = [v.persistent_volume_claim.claim_name for v in pod.spec.volumes if v.persistent_volume_claim]
    assert claims == [claim.metadata.name]
    assert "/data" in [m.mount_path for m in pod.spec.containers[0].volume_mounts]
    assert state_of(api, volume_id) == "in_use"
    assert tenant.detail(instance_id)["volumes"][0]["mount_path"] == "/data"

    # Deleting it while attached is refused; the claim stays.
    refused = api.delete(f"/volumes/{volume_id}")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "volume_attached")
    assert claim_of(tenant, volume_id) is not None

    # Resize: the claim grows (the provisioner plays the resizer), the volume settles back to in_use.
    grown = api.patch(f"/volumes/{volume_id}", {"size_gib": 25})
    assert grown.status_code == 200, grown.json()

    def claim_grew() -> bool:
        current = claim_of(tenant, volume_id)
        return bool(current and (current.status.capacity or {}).get("storage") == "25Gi")

    wait_for(claim_grew, what="the claim to grow to 25Gi", timeout=TIMEOUT)
    wait_for(lambda: state_of(api, volume_id) == "in_use", what="the resize to complete", timeout=TIMEOUT)

    # Stop keeps the claim; start mounts the same claim in a new pod.
    tenant.act(instance_id, "stop")
    wait_for(lambda: Instance.objects.get(pk=instance_id).state == "stopped", what="stopped", timeout=TIMEOUT)
    wait_for(lambda: not pods_of(tenant, instance_id), what="the pod to be gone", timeout=TIMEOUT)
    kept = claim_of(tenant, volume_id)
    assert kept is not None and kept.metadata.uid == claim.metadata.uid and kept.status.phase == "Bound"
    assert state_of(api, volume_id) == "in_use"  # a stopped instance still holds it
    # The first pod's node is cordoned, so the new pod must land on another node and mount the claim there
    # (the simulated provisioner's volumes have no node affinity, like network storage).
    with cordoned(tenant, pod.spec.node_name):
        tenant.act(instance_id, "start")
        wait_for(lambda: running_pod(tenant, instance_id), what="a new running pod", timeout=TIMEOUT)
    new_pod = running_pod(tenant, instance_id)
    assert new_pod is not None and new_pod.metadata.uid != pod.metadata.uid
    assert new_pod.spec.node_name and new_pod.spec.node_name != pod.spec.node_name
    assert [
        v.persistent_volume_claim.claim_name for v in new_pod.spec.volumes if v.persistent_volume_claim
    ] == [claim.metadata.name]
    assert claim_of(tenant, volume_id).metadata.uid == claim.metadata.uid

    # Terminate with delete_volumes: the instance goes, then the volume, its claim and its PV.
    response = api.delete(f"/instances/{instance_id}?delete_volumes=true")
    assert response.status_code == 202, response.json()
    wait_for(lambda: state_of(api, volume_id) == "deleted", what="the volume to be deleted", timeout=TIMEOUT)
    assert claim_of(tenant, volume_id) is None

    def pv_gone() -> bool:
        try:
            tenant.core().read_persistent_volume(pv.metadata.name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(pv_gone, what="the provisioner to delete the PV", timeout=TIMEOUT)

    # The ledger has the volume's GiB-hours, at 10 GiB then 25 GiB, until the deletion was asked for.
    metering.meter_all(now=timezone.now() + timedelta(minutes=2))
    rows = list(UsageRecord.objects.filter(resource_type="volume", resource_id=volume_id).order_by("period"))
    assert rows and {r.meter for r in rows} == {f"volume_gib_hours:{STORAGE_CLASS}"}
    events = dict(VolumeEvent.objects.filter(volume_id=volume_id).values_list("name", "created_at"))
    billed = events["delete_requested"].replace(microsecond=0) - events["created"].replace(microsecond=0)
    assert sum(r.quantity_seconds for r in rows) == int(billed.total_seconds())
    price = Volume.objects.get(pk=volume_id).price_per_gib_hour
    assert {r.unit_price_per_hour for r in rows} <= {price * 10, price * 25}
    assert rows[-1].unit_price_per_hour == price * 25, (
        [(r.period, r.unit_price_per_hour) for r in rows],
        list(VolumeEvent.objects.filter(volume_id=volume_id).values_list("name", "created_at", "size_gib")),
    )


def test_volume_quota_is_ours_and_the_namespace_resource_quota(
    tenant: SandboxTenant, operator: Operator
) -> None:
    quota = quota_for(tenant.actor.tenant)
    quota.max_volume_gib = 30
    quota.save()
    api = VolumeApi(tenant.actor)
    first = api.create(name="first", size_gib=20)
    wait_for(lambda: state_of(api, first["id"]) == "available", what="bound", timeout=TIMEOUT)

    # The namespace's ResourceQuota mirrors the limit and counts the claim.
    def resource_quota() -> client.V1ResourceQuota | None:
        try:
            return tenant.core().read_namespaced_resource_quota(RESOURCE_QUOTA, tenant.namespace)
        except ApiException:
            return None

    def counted() -> bool:
        rq = resource_quota()
        return bool(rq and rq.status and (rq.status.used or {}).get("requests.storage") == "20Gi")

    wait_for(counted, what="the ResourceQuota to count the claim", timeout=TIMEOUT)
    hard = resource_quota().spec.hard
    assert (hard["requests.storage"], hard["persistentvolumeclaims"]) == ("30Gi", "30")

    # Our admission refuses what would pass the limit, before any claim is made.
    refused = api.post("/volumes", {"name": "second", "size_gib": 11, "region": "us-east-1"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "quota_exceeded"
    assert api.patch(f"/volumes/{first['id']}", {"size_gib": 31}).status_code == 409
    # And the apiserver itself refuses a claim past the namespace's quota (the second wall).
    too_big = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "sneaky"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "11Gi"}},
        },
    }
    with pytest.raises(ApiException) as refused_by_cluster:
        tenant.core().create_namespaced_persistent_volume_claim(tenant.namespace, too_big)
    assert refused_by_cluster.value.status == 403 and "exceeded quota" in refused_by_cluster.value.body

    assert api.delete(f"/volumes/{first['id']}").status_code == 202
    # A deleting volume counts until its claim is gone (as in the ResourceQuota), then frees its GiB.
    wait_for(
        lambda: state_of(api, first["id"]) == "deleted", what="the volume to be deleted", timeout=TIMEOUT
    )
    assert claim_of(tenant, first["id"]) is None
    assert api.create(name="second", size_gib=30)["size_gib"] == 30
