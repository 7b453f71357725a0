"""Availability: each pool's capacity minus what every tenant's instances hold."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog import selectors
from apps.catalog.models import GpuType, InstanceType, Region, RegionCapacity, RegionStatus
from apps.instances.models import Instance
from apps.instances.states import State
from tests.factories import TenantFactory, UserFactory
from tests.instances.helpers import instance_row

pytestmark = pytest.mark.django_db


@pytest.fixture
def small():
    """One region with a pool of 8 GPUs (64 vCPU, 512 GiB) and a CPU pool of 16 vCPU and 64 GiB."""
    region = Region.objects.create(slug="test-1", name="Test 1")
    gpu = GpuType.objects.create(slug="g", model="G", memory_gib=80, product_label="G")
    RegionCapacity.objects.create(region=region, gpu_type=gpu, gpus=8, vcpu=64, memory_gib=512)
    RegionCapacity.objects.create(region=region, gpu_type=None, vcpu=16, memory_gib=64)
    types = {
        "g1": InstanceType.objects.create(
            slug="g1", name="g1", gpu_type=gpu, gpu_count=1, vcpu=4, memory_gib=32, price_per_hour=Decimal(1)
        ),
        "g4": InstanceType.objects.create(
            slug="g4",
            name="g4",
            gpu_type=gpu,
            gpu_count=4,
            vcpu=16,
            memory_gib=128,
            price_per_hour=Decimal(4),
        ),
        "fat": InstanceType.objects.create(  # limited by memory, not GPUs
            slug="fat",
            name="fat",
            gpu_type=gpu,
            gpu_count=1,
            vcpu=4,
            memory_gib=200,
            price_per_hour=Decimal(2),
        ),
        "cpu": InstanceType.objects.create(
            slug="cpu", name="cpu", vcpu=4, memory_gib=8, price_per_hour=Decimal("0.1")
        ),
    }
    return region, types


def hold(region, instance_type, state, tenant=None):
    tenant = tenant or TenantFactory()
    return instance_row(
        tenant=tenant,
        name=f"i-{Instance.objects.count()}",
        region=region,
        instance_type=instance_type,
        state=state,
        created_by=UserFactory(),
    )


def available(region, types):
    """Both ways of computing it, which must agree."""
    every = selectors.availability()
    result = {}
    for slug, instance_type in types.items():
        one = selectors.available_count(region=region, instance_type=instance_type)
        assert every.get((region.pk, instance_type.pk), 0) == one, slug
        result[slug] = one
    return result


def test_an_empty_region(small):
    region, types = small

    assert available(region, types) == {"g1": 8, "g4": 2, "fat": 2, "cpu": 4}


def test_what_every_tenant_holds_is_subtracted(small):
    region, types = small
    hold(region, types["g4"], State.RUNNING)  # one tenant
    hold(region, types["g1"], State.PENDING)  # another
    hold(region, types["cpu"], State.STARTING)

    assert available(region, types) == {"g1": 3, "g4": 0, "fat": 1, "cpu": 3}


@pytest.mark.parametrize(
    "state",
    [State.PENDING, State.PROVISIONING, State.RUNNING, State.STARTING, State.STOPPING, State.TERMINATING],
)
def test_states_that_hold_capacity(small, state):
    region, types = small
    hold(region, types["g4"], state)

    assert available(region, types)["g4"] == 1


@pytest.mark.parametrize("state", [State.STOPPED, State.TERMINATED, State.FAILED])
def test_stopped_terminated_and_failed_instances_free_capacity(small, state):
    region, types = small
    hold(region, types["g4"], state)
    hold(region, types["g4"], state)

    assert available(region, types)["g4"] == 2


def test_instances_elsewhere_do_not_count(small):
    region, types = small
    other = Region.objects.create(slug="test-2", name="Test 2")
    hold(other, types["g4"], State.RUNNING)

    assert available(region, types)["g4"] == 2


def test_never_negative(small):
    region, types = small
    RegionCapacity.objects.filter(region=region, gpu_type__isnull=False).update(gpus=2)
    hold(region, types["g1"], State.RUNNING)
    hold(region, types["g1"], State.RUNNING)
    hold(region, types["g1"], State.RUNNING)  # more than the pool (capacity shrank under it)

    assert available(region, types)["g1"] == 0


def test_a_region_in_maintenance_has_none(small):
    region, types = small
    region.status = RegionStatus.MAINTENANCE
    region.save()

    assert available(region, types) == {"g1": 0, "g4": 0, "fat": 0, "cpu": 0}


def test_a_degraded_region_still_offers_capacity(small):
    region, types = small
    region.status = RegionStatus.DEGRADED
    region.save()

    assert available(region, types)["g1"] == 8


def test_a_type_without_a_pool_in_the_region_has_none(small):
    region, types = small
    other_gpu = GpuType.objects.create(slug="h", model="H", memory_gib=80, product_label="H")
    types["h1"] = InstanceType.objects.create(
        slug="h1", name="h1", gpu_type=other_gpu, gpu_count=1, vcpu=1, memory_gib=1, price_per_hour=Decimal(1)
    )

    assert available(region, types)["h1"] == 0


def test_availability_query_count_does_not_grow_with_the_catalog(small, django_assert_max_num_queries):
    region, types = small
    for n in range(10):
        hold(region, types["g1"] if n % 2 else types["cpu"], State.RUNNING)

    with django_assert_max_num_queries(5):
        selectors.availability()
