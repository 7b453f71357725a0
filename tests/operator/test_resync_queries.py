"""The resync's database cost in the steady state (operator_loop.RegionOperator.resync, reconciler.reconcile
with `loaded`): its batch reads, and nothing per instance. A row the batch read is checked again only before
a write (reconciler.CheckedCluster): a pass that writes nothing asks nothing more, and a start made after the
batch was read is not undone (a stop: tests/operator/test_applied_sandbox.py). The comparison of every
tenant's namespace objects with the stores reads its tenants' quotas at once, not one query per tenant.

The pods, Services and nodes are JSON as the apiserver sends it, as the resync's snapshot holds them; the
region's kubeconfig points at an address where nothing listens, so any request the reconciler were to send
would fail the test (the snapshot is what answers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.operator import applied, manifests, tenant_namespaces
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.observed import Observed
from apps.operator.operator_loop import OperatorConfig, RegionOperator
from apps.operator.reconciler import load_instances, reconcile
from apps.operator.specs import spec_from_instance
from apps.operator.stores import ClusterStores
from apps.tenants.models import Tenant
from tests.conftest import Actor
from tests.operator.ready_pods import NODE_PORT, ready_pod

pytestmark = pytest.mark.django_db

NOWHERE = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:9", certificate-authority-data: Q0EtREFUQQ==}
users:
- name: gpucloud
  user: {token: not-a-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: gpucloud}
current-context: nowhere
"""


def snapshot(instances: list[Instance], started: Any) -> Observed:
    """What the stores show for running instances: each one's pod (current and Ready) and its Service as
    applied (stamped with its digest), and the node."""
    pods, services = {}, {}
    for made in load_instances([i.pk for i in instances]):
        spec = spec_from_instance(made)
        pod = manifests.make_pod(spec)
        shown = ready_pod(spec.namespace, spec.name, started)
        pod["metadata"] = {**pod["metadata"], **shown["metadata"]}
        pod["spec"] = {**pod["spec"], **shown["spec"]}
        pod["status"] = shown["status"]
        pods[(spec.namespace, spec.name)] = pod
        service = manifests.make_service(spec)
        service = applied.stamped(service, applied.digest(service))
        service["metadata"]["uid"] = f"uid-{spec.name}"
        service["spec"]["ports"] = [{**p, "nodePort": NODE_PORT} for p in service["spec"]["ports"]]
        services[(spec.namespace, spec.name)] = service
    node = {
        "metadata": {"name": "gpu-node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.1.2.3"}]},
    }
    return Observed(pods=pods, services=services, nodes={"gpu-node-1": node})


def resync_pass(ids: list[Any], seen: Observed) -> list[str]:
    """What the resync does with its instances (one batch; `one` in RegionOperator.resync); the statements."""
    with CaptureQueriesContext(connection) as queries:
        for instance in load_instances(ids):
            reconcile(instance.pk, seen, loaded=instance)
    return [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def region(catalog: Any) -> Region:
    """us-east-1, its kubeconfig pointing where nothing listens."""
    region = Region.objects.get(slug="us-east-1")
    region.set_kubeconfig(NOWHERE)
    region.save()
    return region


def test_a_steady_state_resync_asks_the_same_of_the_database_for_two_instances_or_twelve(
    make_instance: Any, tenant_owner: Actor, region: Region
) -> None:
    started = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    tenant, user = tenant_owner.tenant, tenant_owner.user
    running = [make_instance(tenant, created_by=user, region=region, running_since=started) for _ in range(8)]
    stopped = [
        make_instance(tenant, created_by=user, region=region, state="stopped", desired_state="stopped")
        for _ in range(4)
    ]
    seen = snapshot(running, started)
    # As the resync does with its list of Services: what carries a digest is in place.
    applied.cache.learn(Cluster(api_client(region)).cluster_id, "Service", seen.services)
    everyone = [i.pk for i in running + stopped]
    resync_pass(everyone, seen)  # the first pass records each instance's connection (its ssh command)
    assert all(row.connection.get("port") == NODE_PORT for row in Instance.objects.filter(state="running"))

    two = resync_pass([running[0].pk, stopped[0].pk], seen)
    twelve = resync_pass(everyone, seen)

    assert len(twelve) == len(two), twelve  # the batch's reads, nothing per instance
    assert all(sql.startswith("SELECT") for sql in twelve), twelve  # nothing written, nothing checked
    assert Instance.objects.filter(state="running").count() == 8
    assert Instance.objects.filter(state="stopped").count() == 4


def test_a_start_made_after_the_batch_was_read_is_not_undone(
    make_instance: Any, tenant_owner: Actor, region: Region
) -> None:
    started = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    made = make_instance(
        tenant_owner.tenant,
        created_by=tenant_owner.user,
        region=region,
        state="stopped",
        desired_state="stopped",
    )
    (stale,) = load_instances([made.pk])
    # Started meanwhile: the start's reconcile made the pod, which is Ready and in the stores now.
    Instance.objects.filter(pk=made.pk).update(
        desired_state="running",
        state="running",
        generation=F("generation") + 1,
        running_since=started,
        billing_since=started,
    )
    seen = snapshot([made], started)
    applied.cache.learn(Cluster(api_client(region)).cluster_id, "Service", seen.services)

    # The batch still says "stopped" and the snapshot shows a pod: deleting it (a request to the address
    # where nothing listens, which would fail here) would undo the start.
    reconcile(made.pk, seen, loaded=stale)

    row = Instance.objects.get(pk=made.pk)
    assert (row.desired_state, row.state) == ("running", "running")
    assert row.connection.get("port") == NODE_PORT  # reconciled as the row is now


def applied_stores(cluster: Cluster, region: Region, tenants: list[Tenant]) -> ClusterStores:
    """The leader's stores showing every tenant's namespace objects as applied (stamped with the digest of
    what is due)."""
    watched = ClusterStores(cluster, region.slug)
    listed: dict[str, list[dict[str, Any]]] = {kind: [] for kind in watched.namespace_objects}
    listed["Namespace"] = []
    for tenant in tenants:
        for manifest in tenant_namespaces.due(tenant, region):
            listed[manifest["kind"]].append(applied.stamped(manifest, applied.digest(manifest)))
    watched.namespaces.replace(listed.pop("Namespace"))
    for kind, items in listed.items():
        watched.namespace_objects[kind].replace(items)
    return watched


def test_the_namespace_comparison_asks_the_same_for_one_tenant_or_five(
    make_actor: Callable[..., Actor], region: Region
) -> None:
    tenants = [make_actor().tenant for _ in range(5)]
    cluster = Cluster(api_client(region))
    watched = applied_stores(cluster, region, tenants)
    operator = RegionOperator(region.pk, region.slug, OperatorConfig(), threading.Event())

    def compare(tenant_ids: set[Any]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            # A tenant whose objects were sent (to the address where nothing listens) would count as failed.
            assert operator._refresh_namespaces(region, cluster, tenant_ids, watched) == 0
        assert operator.namespaces_applied == 0
        return [q["sql"] for q in queries.captured_queries]

    one = compare({tenants[0].pk})
    five = compare({tenant.pk for tenant in tenants})

    assert len(five) == len(one), five


def test_a_steady_state_pass_hands_no_pool_thread_anything(
    make_instance: Any, tenant_owner: Actor, region: Region, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to send for a running instance: no submission to the alongside pool (a third of a steady
    reconcile's time was submitting nothing and waiting for it)."""
    from apps.operator import concurrently

    started = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    running = [
        make_instance(tenant_owner.tenant, created_by=tenant_owner.user, region=region, running_since=started)
        for _ in range(3)
    ]
    seen = snapshot(running, started)
    applied.cache.learn(Cluster(api_client(region)).cluster_id, "Service", seen.services)
    ids = [i.pk for i in running]
    resync_pass(ids, seen)  # records each connection once
    submitted: list[Any] = []
    calls = concurrently.calls

    def counting(fn: Any, items: Any) -> Any:
        submitted.extend(items)
        return calls(fn, items)

    monkeypatch.setattr(concurrently, "calls", counting)
    resync_pass(ids, seen)
    assert submitted == []
