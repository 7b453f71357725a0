"""stores.Store against the sandbox's real apiserver, nothing mocked: a store follows its watch (added,
modified, deleted), resumes across server-side timeouts without listing again, lists again on 410 Gone and
then drops what the new list lacks, and falls back to listing when read if its credential may not watch.
The operator's resync reads these stores instead of listing (counted below), and creates a cold start's
pods several at once."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pytest
from kubernetes import client

from apps.instances.models import Instance
from apps.operator import names
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.operator_loop import Operator, RegionOperator
from apps.operator.stores import Store
from tests.fixtures.kube import wait_until
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, wait_for
from tests.operator.test_operator_sandbox import FAST, TIMEOUT
from tests.operator.test_watcher_sandbox import plain_pod
from tests.support.factories import make_instance

JOIN_TIMEOUT = 30.0  # bound for a hung watch, not a performance assertion


def phase(store: Store, namespace: str, name: str) -> Any:
    return ((store.get(namespace, name) or {}).get("status") or {}).get("phase")


def test_a_store_follows_its_watch_resumes_and_lists_again_on_410(
    kube_client: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(kube_namespace, plain_pod("before"))
    store = Store("test", core.list_namespaced_pod, namespace=kube_namespace, label_selector="watched=yes")
    # What the store held before a 410: a pod that has been deleted meanwhile (no DELETED event will come).
    store.replace([{"metadata": {"namespace": kube_namespace, "name": "ghost"}}])
    stop = threading.Event()
    # Resumed from a resourceVersion compacted long ago: the apiserver answers 410 Gone, the store lists.
    run = store.watch(stop, timeout_seconds=2, resource_version="1")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: store.get(kube_namespace, "before"), timeout=30, what="the re-list")
        assert store.get(kube_namespace, "ghost") is None  # the new list replaced the old contents
        assert store.lists == 2  # the replace above, and the one re-list
        core.create_namespaced_pod(kube_namespace, plain_pod("after"))
        # Running takes several events and outlives a few 2 s server-side timeouts: the watch resumes.
        wait_until(lambda: phase(store, kube_namespace, "after") == "Running", timeout=60, what="Running")
        core.delete_namespaced_pod("after", kube_namespace, grace_period_seconds=0)
        wait_until(lambda: store.get(kube_namespace, "after") is None, timeout=30, what="the deletion")
        assert store.lists == 2  # resumed from the last version seen, never listed again
        assert not store.polled
        assert "managedFields" not in store.get(kube_namespace, "before")["metadata"]  # type: ignore[index]
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()


def collection_lists(requests: list[tuple[str, str, dict[str, Any]]]) -> Counter[str]:
    """LIST requests (not watches) by the kind of collection they read."""
    counted: Counter[str] = Counter()
    for method, path, query in requests:
        kind = path.rstrip("/").rsplit("/", 1)[-1]
        if (
            method == "GET"
            and query.get("watch") not in ("true", "True")
            and kind in ("pods", "nodes", "services", "namespaces")
        ):
            counted[kind] += 1
    return counted


@pytest.mark.django_db(transaction=True)
def test_a_resync_reads_its_stores_and_lists_nothing_they_watch(
    sandbox: Any, tenant: SandboxTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = connect(seed().us_east, sandbox)
    launched = tenant.launch(instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name="counted")
    requests: list[tuple[str, str, dict[str, Any]]] = []
    lock = threading.Lock()
    original = client.ApiClient.call_api

    def counting(self: client.ApiClient, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parsed = urlparse(url)
        with lock:
            requests.append((method, parsed.path, dict(parse_qsl(parsed.query))))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(client.ApiClient, "call_api", counting)
    operator = Operator(FAST, regions=["us-east-1"]).start()
    try:
        wait_for(lambda: "us-east-1" in operator.leading(), what="leading", timeout=TIMEOUT)
        leader = operator.threads[region.pk]
        wait_for(
            lambda: leader.resyncs >= 1 and Instance.objects.get(pk=launched["id"]).state == "running",
            what="a first resync and the instance running",
            timeout=TIMEOUT,
        )
        watched = leader.stores
        assert watched is not None
        with lock:
            mark = len(requests)
        first = leader.resyncs
        wait_for(lambda: leader.resyncs >= first + 3, what="three more resyncs", timeout=TIMEOUT)
        with lock:
            window = requests[mark:]
        passes = leader.resyncs - first + 1  # one may have been under way at the mark
    finally:
        operator.shutdown()
    lists = collection_lists(window)
    # Pods and nodes are watched (the operator's credential may): no resync, GC or capacity pass lists
    # them. Before the stores, every resync listed pods three times and nodes twice.
    assert lists["pods"] == 0 and lists["nodes"] == 0, lists
    # Services and namespaces: watched where the credential may; else listed once per pass, not twice.
    assert lists["services"] <= (passes if watched.services.polled else 0), lists
    assert lists["namespaces"] <= (passes if watched.namespaces.polled else 0), lists


@pytest.mark.django_db(transaction=True)
def test_a_cold_start_creates_every_pending_pod_several_at_once(
    sandbox: Any, tenant: SandboxTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Instances written as rows (no launch, so no on-commit reconcile made their pods): what a fresh
    # leader finds after an outage. Eight stay within the tenant's default quota of ten instances.
    region = connect(seed().us_east, sandbox)
    owner = tenant.actor
    made = [
        make_instance(owner.tenant, created_by=owner.user, state="pending", instance_type="cpu-4x")
        for _ in range(8)
    ]
    lock, in_flight, most = threading.Lock(), [0], [0]
    create_pod = Cluster.create_pod

    def counting(self: Cluster, manifest: dict[str, Any]) -> Any:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            return create_pod(self, manifest)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(Cluster, "create_pod", counting)
    leader = RegionOperator(region.pk, region.slug, replace(FAST, resync_workers=4), threading.Event())
    assert leader.lock.try_acquire()
    try:
        leader.resync(region, Cluster(api_client(region)))
    finally:
        leader.lock.release()
    pods = tenant.core().list_namespaced_pod(tenant.namespace, label_selector=names.managed_selector())
    assert {p.metadata.labels[names.INSTANCE_LABEL] for p in pods.items} == {str(i.pk) for i in made}
    assert 1 < most[0] <= 4  # created concurrently, never more than resync_workers at once
