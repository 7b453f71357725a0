"""Cluster admission under concurrency, each thread with its own connection (the harness of
tests/quotas/test_admission_concurrency.py: threads released together, the race made certain by holding a
lock until all of them wait on it).

- Fifty cluster launches of one tenant at its quota's edge: exactly as many clusters as the quota holds get
  through, whole; the rest are refused quota_exceeded with no node written; usage never passes the limit.
- Two tenants racing for the last block: exactly one gets it; the other is refused no_capacity having
  written nothing (no node, so no pod is ever made for it).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import transaction

from apps.accounts.models import User
from apps.catalog.models import Region, RegionCapacity
from apps.instances import cluster_services
from apps.instances.cluster_services import ClusterRequest
from apps.instances.models import Cluster, Instance
from apps.quotas.usage import usage_of
from apps.tenants.models import Tenant
from apps.tenants.roles import Role
from tests.factories import TenantFactory, UserFactory
from tests.instances.test_cluster_admission import ROOMY, nodes
from tests.quotas.conftest import set_quota
from tests.quotas.test_admission_concurrency import _wait_for_lock_waiters, hammer

pytestmark = pytest.mark.django_db(transaction=True)


def owner() -> tuple[Tenant, User]:
    tenant, user = TenantFactory(), UserFactory()
    tenant.memberships.create(user=user, role=Role.OWNER)
    return tenant, user


def creator(tenant_id: Any, user_id: Any, nodes_each: int, name: str) -> Any:
    def work(i: int) -> Cluster:
        req = ClusterRequest(
            instance_type="gpu-h100x8",
            region="us-east-1",
            image="pytorch",
            node_count=nodes_each,
            name=f"{name}-{i}",
        )
        return cluster_services.cluster_create(
            actor=User.objects.get(pk=user_id), tenant=Tenant.objects.get(pk=tenant_id), req=req
        )

    return work


@pytest.fixture
def fleet(catalog: Any) -> Region:
    region = Region.objects.get(slug="us-east-1")
    RegionCapacity.objects.filter(region=region, gpu_type__slug="h100-80gb").update(
        gpus=8 * 400, vcpu=200 * 400, memory_gib=1750 * 400
    )
    return region


def test_fifty_cluster_launches_at_the_quota_edge_never_overrun_it(fleet: Region) -> None:
    nodes(fleet, "b0", 200)
    tenant, user = owner()
    set_quota(tenant, **{**ROOMY, "max_gpus": 80})  # five 2-node clusters of 8 GPUs a node
    outcomes = hammer(
        creator(tenant.pk, user.pk, 2, "edge"), gate=tenant, watch=lambda: usage_of(tenant).gpus
    )
    assert outcomes.unexpected == [], outcomes.unexpected[:3]
    assert outcomes.queued_on_lock, "the cluster launches did not queue on the quota row lock"
    assert len(outcomes.admitted) == 5
    assert {error.code for error in outcomes.refused} == {"quota_exceeded"}
    assert {error.details["used"] for error in outcomes.refused} == {80}  # each saw every earlier admission
    assert outcomes.peak <= 80
    assert Instance.objects.filter(tenant=tenant).count() == 10
    assert Cluster.objects.filter(tenant=tenant).count() == 5
    for cluster in Cluster.objects.filter(tenant=tenant):
        assert cluster.nodes.count() == 2  # whole: never a cluster with part of its nodes


def test_two_tenants_racing_for_the_last_block_exactly_one_wins(fleet: Region) -> None:
    nodes(fleet, "last", 4)
    racers = []
    for _ in range(2):
        tenant, user = owner()
        set_quota(tenant, **ROOMY)
        racers.append((tenant.pk, user.pk))

    def work(i: int) -> Cluster:
        return creator(*racers[i], 4, "racer")(i)

    # Both wait on the pool's row, held here until they do: the race is certain, not likely.
    with transaction.atomic():
        RegionCapacity.objects.select_for_update().get(region=fleet, gpu_type__slug="h100-80gb")
        results: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: results.setdefault("outcomes", hammer(work, threads=2)))
        runner.start()
        queued = _wait_for_lock_waiters(2)
    runner.join(timeout=120)
    outcomes = results["outcomes"]
    assert queued, "the admissions did not queue on the pool's row lock"
    assert outcomes.unexpected == [], outcomes.unexpected[:3]
    assert len(outcomes.admitted) == 1 and len(outcomes.refused) == 1
    assert outcomes.refused[0].code == "no_capacity"
    assert outcomes.refused[0].details["largest_block_free"] == 0
    assert Instance.objects.count() == 4 and Cluster.objects.count() == 1
