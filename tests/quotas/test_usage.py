"""What counts against a quota (usage_of) and the order and wording of admission's refusals (admit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings

from apps.catalog.models import GpuType, InstanceType
from apps.instances import services as instance_services
from apps.instances.models import Instance
from apps.instances.states import HOLDS_COMPUTE, LIVE, Action, Observation, State
from apps.quotas.models import GpuQuota, TenantQuota
from apps.quotas.services import Demand, QuotaExceeded, admit, quota_for
from apps.quotas.usage import usage_of
from tests.factories import TenantFactory, UserFactory
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant() -> Any:
    return TenantFactory()


@pytest.fixture
def user() -> Any:
    return UserFactory()


@pytest.mark.parametrize("state", list(State), ids=str)
def test_which_states_count(
    state: State, tenant: Any, user: Any, make_instance: Callable[..., Instance]
) -> None:
    make_instance(tenant, created_by=user, state=state, instance_type="gpu-h100x2")

    usage = usage_of(tenant)

    holds = state in HOLDS_COMPUTE
    assert (usage.gpus, usage.vcpu, usage.memory_gib) == ((2, 48, 440) if holds else (0, 0, 0))
    assert usage.instances == (1 if state in LIVE else 0)


def test_usage_is_per_tenant_per_type_and_region_and_frozen_at_launch(
    tenant: Any, user: Any, make_instance: Callable[..., Instance], catalog: Any
) -> None:
    make_instance(tenant, created_by=user, instance_type="gpu-h100x2")
    make_instance(tenant, created_by=user, instance_type="gpu-h100x1", region=catalog.eu_west)
    make_instance(tenant, created_by=user, instance_type="gpu-a100x1")
    make_instance(tenant, created_by=user, instance_type="cpu-4x")
    make_instance(TenantFactory(), created_by=user, instance_type="gpu-h100x8")
    # Staff editing the type later changes nothing for instances already launched.
    InstanceType.objects.filter(slug="gpu-h100x2").update(gpu_count=8, vcpu=200)

    usage = usage_of(tenant)

    h100, a100 = (GpuType.objects.get(slug=s).pk for s in ("h100-80gb", "a100-80gb"))
    assert (usage.instances, usage.gpus, usage.vcpu) == (4, 4, 48 + 24 + 30 + 4)
    assert usage.gpus_of_type(h100) == 3
    assert usage.gpus_of_type(h100, catalog.us_east.pk) == 2
    assert usage.gpus_of_type(h100, catalog.eu_west.pk) == 1
    assert usage.gpus_of_type(a100) == 1
    assert usage.gpus_of_type(a100, catalog.eu_west.pk) == 0


def test_a_tenant_gets_the_default_quota_once(tenant: Any) -> None:
    first = quota_for(tenant)
    again = quota_for(tenant)

    assert first.pk == again.pk
    assert TenantQuota.objects.filter(tenant=tenant).count() == 1
    for field, value in settings.DEFAULT_TENANT_QUOTA.items():
        assert getattr(first, field) == value


def _demand(catalog: Any, slug: str, *, region: Any = None, new_instance: bool = True) -> Demand:
    itype = catalog.instance_type(slug)
    return Demand(
        gpu_type=itype.gpu_type,
        gpus=itype.gpu_count,
        vcpu=itype.vcpu,
        memory_gib=itype.memory_gib,
        region=region or catalog.us_east,
        new_instance=new_instance,
    )


@pytest.mark.parametrize(
    ("limits", "resource", "limit", "used", "requested"),
    [
        # Everything is short; the instance count is checked first, then GPUs, vCPU, memory.
        ({"max_instances": 1, "max_gpus": 1, "max_vcpu": 24, "max_memory_gib": 220}, "instances", 1, 1, 1),
        ({"max_gpus": 1, "max_vcpu": 24, "max_memory_gib": 220}, "gpus", 1, 1, 1),
        ({"max_vcpu": 24, "max_memory_gib": 220}, "vcpu", 24, 24, 24),
        ({"max_memory_gib": 220}, "memory_gib", 220, 220, 220),
    ],
)
def test_admission_refuses_naming_the_first_resource_short(
    tenant: Any,
    user: Any,
    catalog: Any,
    make_instance: Callable[..., Instance],
    limits: dict[str, int],
    resource: str,
    limit: int,
    used: int,
    requested: int,
) -> None:
    set_quota(tenant, **limits)
    make_instance(tenant, created_by=user, instance_type="gpu-h100x1")

    with pytest.raises(QuotaExceeded) as refused:
        admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x1"))

    assert refused.value.code == "quota_exceeded"
    assert refused.value.status_code == 409
    assert refused.value.details == {
        "resource": resource,
        "limit": limit,
        "used": used,
        "requested": requested,
    }
    assert f"limit {limit}, in use {used}, this request needs {requested}" in refused.value.message


def test_a_start_does_not_count_as_a_new_instance(
    tenant: Any, user: Any, catalog: Any, make_instance: Callable[..., Instance]
) -> None:
    set_quota(tenant, max_instances=1)
    make_instance(tenant, created_by=user, state=State.STOPPED)

    admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x1", new_instance=False))
    with pytest.raises(QuotaExceeded):
        admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x1"))


def test_cpu_instances_ignore_gpu_limits(tenant: Any, catalog: Any) -> None:
    set_quota(tenant, max_gpus=0)
    GpuQuota.objects.create(tenant=tenant, gpu_type=GpuType.objects.get(slug="h100-80gb"), max_gpus=0)

    admit(tenant=tenant, demand=_demand(catalog, "cpu-4x"))
    with pytest.raises(QuotaExceeded):
        admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x1"))


def test_gpu_type_limits_apply_to_their_type_and_region_only(
    tenant: Any, user: Any, catalog: Any, make_instance: Callable[..., Instance]
) -> None:
    h100 = GpuType.objects.get(slug="h100-80gb")
    GpuQuota.objects.create(tenant=tenant, gpu_type=h100, region=catalog.us_east, max_gpus=1)
    GpuQuota.objects.create(tenant=tenant, gpu_type=h100, max_gpus=3)
    make_instance(tenant, created_by=user, instance_type="gpu-h100x1")

    # us-east-1 is full for H100s; eu-west-1 is not, until the global H100 limit is reached; A100s are free.
    with pytest.raises(QuotaExceeded) as regional:
        admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x1"))
    admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x2", region=catalog.eu_west))
    make_instance(tenant, created_by=user, instance_type="gpu-h100x2", region=catalog.eu_west)
    with pytest.raises(QuotaExceeded) as overall:
        admit(tenant=tenant, demand=_demand(catalog, "gpu-h100x1", region=catalog.eu_west))
    admit(tenant=tenant, demand=_demand(catalog, "gpu-a100x1"))

    assert regional.value.details == {"resource": "gpu_type:h100-80gb", "limit": 1, "used": 1, "requested": 1}
    assert "h100-80gb GPUs in us-east-1" in regional.value.message
    assert overall.value.details == {"resource": "gpu_type:h100-80gb", "limit": 3, "used": 3, "requested": 1}


def test_terminating_an_idle_instance_holds_nothing(tenant: Any, user: Any, catalog: Any) -> None:
    set_quota(tenant, max_gpus=1)
    req = instance_services.LaunchRequest(instance_type="gpu-h100x1", region="us-east-1", image="pytorch")
    first = instance_services.instance_launch(actor=user, tenant=tenant, req=req)
    instance_services.instance_act(actor=user, instance=first, action=Action.STOP)
    instance_services.instance_observe(instance_id=first.pk, observation=Observation.POD_GONE)
    instance_services.instance_launch(actor=user, tenant=tenant, req=req)  # takes the freed GPU

    instance_services.instance_act(actor=user, instance=first, action=Action.TERMINATE)

    assert usage_of(tenant).gpus <= 1
