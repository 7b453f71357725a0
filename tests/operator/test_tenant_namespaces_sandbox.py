"""The resync's pass over tenant namespaces against the sandbox, nothing mocked: a tenant's objects are
applied when one is missing or its stamped digest differs from what is due, and not at all when the stores
show them all in place (before, every pass applied all 8 of every tenant).

The stores read with the sandbox's administrator: the operator's identity may list and watch these kinds
under the chart's RBAC now, but a sandbox built before that change has the older rules. Applies go through
the operator's own identity, as in production."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from apps.catalog.models import GpuType
from apps.operator import manifests, names, tenant_namespaces
from apps.operator.client import api_client
from apps.operator.cluster import Cluster
from apps.operator.operator_loop import RegionOperator
from apps.operator.stores import ClusterStores
from apps.quotas.services import quota_for
from tests.fixtures.kube import wait_until
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect
from tests.operator.test_operator_sandbox import FAST

pytestmark = pytest.mark.django_db(transaction=True)

JOIN_TIMEOUT = 30.0  # bound for a hung watch, not a performance assertion


@pytest.fixture
def watched(kube_client: client.ApiClient) -> Iterator[ClusterStores]:
    stores = ClusterStores(Cluster(kube_client), "test")
    stop = threading.Event()
    threads = [
        threading.Thread(target=store.watch(stop, timeout_seconds=5), daemon=True)
        for store in [stores.namespaces, *stores.namespace_objects.values()]
    ]
    for thread in threads:
        thread.start()
    assert all(
        store.synced.wait(JOIN_TIMEOUT) for store in [stores.namespaces, *stores.namespace_objects.values()]
    )
    assert stores.knows_namespace_objects()
    yield stores
    stop.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)


def test_namespace_objects_are_applied_only_when_missing_or_different(
    sandbox: Any, tenant: SandboxTenant, watched: ClusterStores
) -> None:
    catalog = seed()
    region = connect(catalog.us_east, sandbox)
    cluster = Cluster(api_client(region))
    leader = RegionOperator(region.pk, region.slug, FAST, threading.Event())  # not started: one pass each
    tenants = {tenant.actor.tenant.pk}
    gpu_types = list(GpuType.objects.all())

    def in_place() -> bool:
        due = tenant_namespaces.due(tenant.actor.tenant, region, gpu_types)
        return tenant_namespaces.current(due, watched.namespace_objects_snapshot())

    def one_pass() -> int:
        assert leader._refresh_namespaces(region, cluster, tenants, watched) == 0
        return leader.namespaces_applied

    assert one_pass() == 1  # nothing there yet
    wait_until(in_place, timeout=30, what="the stores to show the applied objects")
    assert one_pass() == 0 and one_pass() == 0  # all in place: not one PATCH

    # Deleted behind the operator's back: applied again.
    tenant.core().delete_namespaced_limit_range(manifests.LIMIT_RANGE, tenant.namespace)
    wait_until(lambda: not in_place(), timeout=30, what="the store to lose the LimitRange")
    assert one_pass() == 1
    wait_until(in_place, timeout=30, what="the LimitRange back")

    # Edited so that it no longer carries what was applied: applied again.
    tenant.core().patch_namespaced_resource_quota(
        manifests.RESOURCE_QUOTA,
        tenant.namespace,
        {"metadata": {"annotations": {names.APPLIED_DIGEST_KEY: "edited"}}},
    )
    wait_until(lambda: not in_place(), timeout=30, what="the store to see the edit")
    assert one_pass() == 1
    wait_until(in_place, timeout=30, what="the quota restored")

    # What is due changed (the tenant's quota): applied.
    quota = quota_for(tenant.actor.tenant)
    quota.max_instances += 1
    quota.save()
    assert one_pass() == 1
    wait_until(in_place, timeout=30, what="the new quota in place")
    assert one_pass() == 0
