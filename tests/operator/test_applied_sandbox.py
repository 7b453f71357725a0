"""Applying only what changed (apps/operator/applied.py) against the sandbox, nothing mocked: a
launch in a tenant whose namespace this process applied sends only the instance's own objects; what is
deleted behind its back comes back (a missing namespace at the next launch, anything else at the operator's
resync); a resync reads the cluster through one list per kind (observed.py)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.operator import applied, manifests, names, observed
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.operator_loop import Operator
from apps.operator.reconciler import load_instances, reconcile
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for
from tests.operator.test_operator_sandbox import FAST

TIMEOUT = 60.0  # bound for a hung cluster, not a performance assertion
LAUNCH = {"instance_type": "gpu-h100x1", "region": "us-east-1", "image": "pytorch"}


@pytest.fixture
def cluster_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request of these kinds the reconciler sends, as (call, kind or name)."""
    calls: list[tuple[str, str]] = []
    real_apply = Cluster.apply

    def apply(self: Cluster, manifest: dict[str, Any]) -> Any:
        calls.append(("apply", manifest["kind"]))
        return real_apply(self, manifest)

    monkeypatch.setattr(Cluster, "apply", apply)
    for name in ("read_pod", "read_service", "read_node"):
        real = getattr(Cluster, name)

        def read(self: Cluster, *args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append((_name, args[-1]))
            return _real(self, *args)

        monkeypatch.setattr(Cluster, name, read)
    return calls


def namespace_gone(tenant: SandboxTenant) -> bool:
    try:
        tenant.core().read_namespace(tenant.namespace)
    except ApiException as exc:
        return exc.status == 404
    return False


@pytest.mark.django_db
def test_a_second_launch_sends_only_its_own_objects_and_a_lost_namespace_comes_back(
    sandbox: Any, tenant: SandboxTenant, cluster_calls: list[tuple[str, str]]
) -> None:
    connect(seed().us_east, sandbox)
    first = tenant.launch(name="first", **LAUNCH)
    namespace_kinds = {kind for call, kind in cluster_calls if call == "apply"} - {"Secret", "Service"}
    assert {"Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy"} <= namespace_kinds

    cluster_calls.clear()
    second = tenant.launch(name="second", **LAUNCH)
    # The Service first: the Secret is owned by it (reconciler._ensure_access), so it needs its uid.
    assert [kind for call, kind in cluster_calls if call == "apply"] == ["Service", "Secret"]
    drive(second["id"], state_is("running"), what="running")
    # Recording it running took the node port from the Service as applied, not from a read.
    assert ("read_service", names.instance_object_name(second["id"])) not in cluster_calls
    assert Instance.objects.get(pk=second["id"]).connection["port"]

    # The namespace goes behind this process's back: the next launch finds out and applies it all again.
    tenant.core().delete_namespace(tenant.namespace)
    wait_for(lambda: namespace_gone(tenant), what="the namespace to be deleted", timeout=TIMEOUT)
    cluster_calls.clear()
    third = tenant.launch(name="third", **LAUNCH)
    assert ("apply", "Namespace") in cluster_calls
    drive(third["id"], state_is("running"), what="running in the recreated namespace")
    assert tenant.read_pod(third["id"]) is not None
    assert Instance.objects.get(pk=first["id"]).state != "terminated"  # the others are the operator's


@pytest.mark.django_db
def test_a_resync_reads_lists_not_one_request_per_instance_even_in_a_new_process(
    sandbox: Any, tenant: SandboxTenant, cluster_calls: list[tuple[str, str]]
) -> None:
    region = connect(seed().us_east, sandbox)
    ids = [tenant.launch(name=f"steady-{i}", **LAUNCH)["id"] for i in range(3)]
    for instance_id in ids:
        drive(instance_id, state_is("running"), what="running")
    cluster = Cluster(api_client(Region.objects.get(pk=region.pk)))
    seen = observed.take(cluster)
    assert all(seen.pod(tenant.namespace, names.instance_object_name(i)) for i in ids)
    # A process that applied nothing (a new leader) learns what is in place from the stamped lists.
    applied.cache.clear()
    applied.cache.learn(cluster.cluster_id, "Service", seen.services)

    cluster_calls.clear()
    for instance_id in ids:
        reconcile(instance_id, seen)
    assert cluster_calls == []  # nothing to apply, nothing to read: the lists had it all
    assert all(Instance.objects.get(pk=i).connection.get("port") for i in ids)


@pytest.mark.django_db(transaction=True)
def test_the_resync_restores_what_was_deleted_though_this_process_applied_it(
    sandbox: Any, tenant: SandboxTenant
) -> None:
    connect(seed().us_east, sandbox)
    operator = Operator(FAST, regions=["us-east-1"]).start()
    try:
        wait_for(lambda: "us-east-1" in operator.leading(), what="the operator to lead", timeout=TIMEOUT)
        instance_id = tenant.launch(name="guarded", **LAUNCH)["id"]
        wait_for(
            lambda: Instance.objects.get(pk=instance_id).state == "running", what="running", timeout=TIMEOUT
        )
        name, namespace = names.instance_object_name(instance_id), tenant.namespace
        core, net = tenant.core(), tenant.net()
        policies = [p.metadata.name for p in net.list_namespaced_network_policy(namespace).items]
        assert policies
        for policy in policies:
            net.delete_namespaced_network_policy(policy, namespace)
        core.delete_namespaced_resource_quota(manifests.RESOURCE_QUOTA, namespace)
        core.delete_namespaced_service(name, namespace)  # its Secret goes with it (owned by the Service)
        try:
            core.delete_namespaced_secret(names.ssh_secret_name(instance_id), namespace)
        except ApiException as exc:
            if exc.status != 404:  # the garbage collector was first
                raise

        def restored() -> bool:
            try:
                core.read_namespaced_resource_quota(manifests.RESOURCE_QUOTA, namespace)
                core.read_namespaced_service(name, namespace)
                core.read_namespaced_secret(names.ssh_secret_name(instance_id), namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            there = {p.metadata.name for p in net.list_namespaced_network_policy(namespace).items}
            return there == set(policies)

        wait_for(restored, what="the resync to restore every object", timeout=TIMEOUT)
    finally:
        operator.shutdown()


@pytest.mark.django_db
def test_a_resync_batch_read_before_a_stop_creates_no_pod(sandbox: Any, tenant: SandboxTenant) -> None:
    region = connect(seed().us_east, sandbox)
    instance_id = tenant.launch(name="stopping", **LAUNCH)["id"]
    drive(instance_id, state_is("running"), what="running")
    cluster = Cluster(api_client(Region.objects.get(pk=region.pk)))
    (stale,) = load_instances([instance_id])
    tenant.act(instance_id, "stop")  # the on-commit reconcile deletes the pod
    drive(instance_id, state_is("stopped"), what="stopped")
    assert tenant.read_pod(instance_id) is None

    reconcile(instance_id, observed.take(cluster), loaded=stale)  # the batch still says "running"

    assert tenant.read_pod(instance_id) is None
    assert Instance.objects.get(pk=instance_id).state == "stopped"
