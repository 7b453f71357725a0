"""Capacity under concurrency, across tenants: a pool with SLOTS free and TENANTS tenants launching into it
at once, each thread with its own connection. Quotas are per tenant and cannot serialise them; the pool's row
lock (catalog.available_count(lock=True), taken after the quota row) must. Exactly SLOTS launches get
through, the rest are refused no_capacity, and the pool is never overcommitted.

The race is made certain as in tests/quotas/test_admission_concurrency.py: the test holds the pool's row lock
until every launch is waiting on a lock, then lets go. Without the pool lock the launches do not wait: they
all see the free slots and commit, and more than SLOTS get through.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from apps.accounts.models import User
from apps.catalog.models import GpuType, Region, RegionCapacity
from apps.core.errors import DomainError
from apps.instances import services
from apps.instances.models import Instance
from apps.tenants.models import Tenant
from apps.tenants.roles import Role
from tests.factories import TenantFactory, UserFactory
from tests.quotas.conftest import set_quota
from tests.quotas.test_admission_concurrency import QUEUE_DEADLINE_SECONDS, _wait_for_lock_waiters

pytestmark = pytest.mark.django_db(transaction=True)

TENANTS = 12
SLOTS = 3


def _launch(tenant_id: Any, user_id: Any, barrier: threading.Barrier, results: list[Any], i: int) -> None:
    try:
        barrier.wait(timeout=QUEUE_DEADLINE_SECONDS)
        results[i] = services.instance_launch(
            actor=User.objects.get(pk=user_id),
            tenant=Tenant.objects.get(pk=tenant_id),
            req=services.LaunchRequest(
                instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name=f"pool-racer-{i}"
            ),
        )
    except DomainError as exc:
        results[i] = exc
    except BaseException as exc:  # reported by the test, never swallowed
        results[i] = exc
    finally:
        connection.close()


def test_tenants_racing_for_the_last_slots_of_a_pool_never_overcommit_it(catalog: Any) -> None:
    region = Region.objects.get(slug="us-east-1")
    h100 = GpuType.objects.get(slug="h100-80gb")
    RegionCapacity.objects.filter(region=region, gpu_type=h100).update(gpus=SLOTS)
    racers = []
    for _ in range(TENANTS):
        tenant, user = TenantFactory(), UserFactory()
        tenant.memberships.create(user=user, role=Role.OWNER)
        set_quota(tenant)  # roomy: only capacity can refuse
        racers.append((tenant.pk, user.pk))

    results: list[Any] = [RuntimeError("did not run")] * TENANTS
    barrier = threading.Barrier(TENANTS + 1)
    threads = [
        threading.Thread(target=_launch, args=(t, u, barrier, results, i), daemon=True)
        for i, (t, u) in enumerate(racers)
    ]
    for thread in threads:
        thread.start()
    with transaction.atomic():
        RegionCapacity.objects.select_for_update().get(region=region, gpu_type=h100)
        barrier.wait()
        queued = _wait_for_lock_waiters(TENANTS)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "threads still running"

    unexpected = [r for r in results if not isinstance(r, Instance | DomainError)]
    assert unexpected == [], unexpected[:3]
    admitted = [r for r in results if isinstance(r, Instance)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(admitted) == SLOTS
    assert {r.code for r in refused} == {"no_capacity"}
    assert len(refused) == TENANTS - SLOTS
    held = Instance.objects.filter(region=region, gpu_type=h100, holds_compute=True)
    assert sum(held.values_list("gpu_count", flat=True)) == SLOTS
    assert queued, "the launches did not queue on the pool's row lock"
