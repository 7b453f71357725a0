"""Garbage collection against the sandbox: labelled objects without a live instance go, those of live
instances stay, closed tenants' namespaces go, objects of tenants this database does not know stay
(`known_tenants_only`, which every test on the shared sandbox must use)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.operator import gc, manifests, names
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.reconciler import load_instance
from apps.operator.specs import spec_from_instance
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.factories import TenantFactory
from tests.fixtures.kube import delete_namespace, wait_until
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(
    sandbox: Any, kube_clients: dict[str, client.ApiClient], make_actor: Callable[..., Any]
) -> Iterator[Any]:
    catalog = seed()
    connect(catalog.us_east, sandbox)
    tenant = SandboxTenant(make_actor(Role.OWNER), kube_clients)
    yield catalog, tenant
    tenant.cleanup()


def exists(fn: Callable[..., Any], *args: Any) -> bool:
    try:
        fn(*args)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def gone_or_going(fn: Callable[..., Any], *args: Any) -> bool:
    try:
        return fn(*args).metadata.deletion_timestamp is not None
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise


def test_orphans_go_and_live_instances_stay(world: Any, make_namespace: Callable[..., str]) -> None:
    catalog, tenant = world
    live = tenant.launch(instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name="keeper")
    core = tenant.core()
    ns = tenant.namespace
    pod_name = names.instance_object_name(live["id"])
    wait_until(lambda: exists(core.read_namespaced_pod, pod_name, ns), timeout=60, what="the live pod")

    # Leftovers of an instance that never existed here, in the tenant's own namespace.
    ghost = uuid.uuid4()
    labels = names.common_labels(tenant.actor.tenant.pk, ghost)
    ghost_pod = manifests.make_pod(spec_from_instance(load_instance(live["id"])))
    ghost_pod["metadata"].update(name=names.instance_object_name(ghost), labels=labels)
    core.create_namespaced_pod(ns, ghost_pod)
    secret = {"metadata": {"name": names.ssh_secret_name(ghost), "labels": labels}, "stringData": {"a": "b"}}
    core.create_namespaced_secret(ns, secret)

    # A terminated instance's leftovers (made after its termination, as a crashed deletion would leave them:
    # its Service, and its Secret made before Secrets had an owner).
    dead = tenant.launch(instance_type="cpu-4x", region="us-east-1", image="cuda-12", name="dead")
    tenant.act(dead["id"], "terminate")
    drive(dead["id"], state_is("terminated"), what="terminated")  # the reconciler, as the watcher would
    dead_labels = names.common_labels(tenant.actor.tenant.pk, dead["id"])
    dead_name, dead_secret = names.instance_object_name(dead["id"]), names.ssh_secret_name(dead["id"])
    core.create_namespaced_service(
        ns, {"metadata": {"name": dead_name, "labels": dead_labels}, "spec": {"ports": [{"port": 22}]}}
    )
    core.create_namespaced_secret(
        ns, {"metadata": {"name": dead_secret, "labels": dead_labels}, "stringData": {"a": "b"}}
    )

    # Another control plane's objects: a tenant this database does not know.
    foreign_ns = make_namespace(region="us-east-1")
    foreign_labels = names.common_labels(uuid.uuid4(), uuid.uuid4())
    core.create_namespaced_secret(foreign_ns, {"metadata": {"name": "theirs", "labels": foreign_labels}})

    report = gc.collect(Cluster(api_client(catalog.us_east)), catalog.us_east, known_tenants_only=True)

    deleted = set(report.deleted)
    assert ("Pod", ns, names.instance_object_name(ghost)) in deleted
    assert ("Secret", ns, names.ssh_secret_name(ghost)) in deleted
    assert ("Service", ns, dead_name) in deleted
    assert ("Secret", ns, dead_secret) in deleted
    assert not any(name.startswith(pod_name) for _kind, _ns, name in deleted)
    assert gone_or_going(core.read_namespaced_pod, names.instance_object_name(ghost), ns)
    assert not exists(core.read_namespaced_secret, dead_secret, ns)
    assert exists(core.read_namespaced_pod, pod_name, ns)
    assert exists(core.read_namespaced_service, pod_name, ns)
    assert exists(core.read_namespaced_secret, names.ssh_secret_name(live["id"]), ns)
    assert exists(core.read_namespaced_secret, "theirs", foreign_ns)
    assert exists(core.read_namespace, ns)


def test_an_instances_secret_goes_with_its_service_without_the_operator(world: Any) -> None:
    """The operator may not list Secrets: each instance's Secret is owned by its Service, so Kubernetes'
    garbage collector (kube-controller-manager) deletes it with the Service, whoever deletes that."""
    _catalog, tenant = world
    live = tenant.launch(instance_type="cpu-4x", region="us-east-1", image="cuda-12", name="owned")
    drive(live["id"], state_is("running"), what="running")
    core, ns = tenant.core(), tenant.namespace
    name, secret_name = names.instance_object_name(live["id"]), names.ssh_secret_name(live["id"])
    service = core.read_namespaced_service(name, ns)
    [owner] = core.read_namespaced_secret(secret_name, ns).metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == ("Service", name, service.metadata.uid)

    core.delete_namespaced_service(name, ns)

    wait_until(
        lambda: gone_or_going(core.read_namespaced_secret, secret_name, ns),
        timeout=60,
        what="the garbage collector to delete the Secret with its Service",
    )


def test_namespaces_of_closed_tenants_go(world: Any, kube_clients: dict[str, client.ApiClient]) -> None:
    catalog, tenant = world
    core = tenant.core()
    closed, active = TenantFactory(status=TenantStatus.CLOSED), TenantFactory()
    made = []
    for t in (closed, active):
        name = names.namespace_name(t.pk, t.slug)
        core.create_namespace({"metadata": {"name": name, "labels": names.common_labels(t.pk)}})
        made.append(name)
    try:
        report = gc.collect(Cluster(api_client(catalog.us_east)), catalog.us_east, known_tenants_only=True)
        assert ("Namespace", "", made[0]) in report.deleted
        assert ("Namespace", "", made[1]) not in report.deleted
        assert gone_or_going(core.read_namespace, made[0])
        assert core.read_namespace(made[1]).metadata.deletion_timestamp is None
    finally:
        for name in made:
            delete_namespace(kube_clients["us-east-1"], name)
