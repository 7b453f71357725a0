"""Fixtures for the quota tests: the seeded catalog, limits set directly, and instance rows written without
admission (to stand for what a tenant already holds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apps.catalog.models import Region
from apps.instances.models import Instance
from apps.quotas.models import TenantQuota
from apps.tenants.models import Tenant
from tests.instances.helpers import Catalog, instance_row, seed

# Roomy enough that only the limit a test sets can refuse a launch.
ROOMY = {"max_gpus": 1000, "max_instances": 1000, "max_vcpu": 100_000, "max_memory_gib": 1_000_000}


@pytest.fixture
def catalog(db: Any) -> Catalog:
    return seed()


def set_quota(tenant: Tenant, **limits: int) -> TenantQuota:
    values = {**ROOMY, "max_volume_gib": 1000, "max_object_storage_gib": 1000, **limits}
    quota, _ = TenantQuota.objects.update_or_create(tenant=tenant, defaults=values)
    return quota


@pytest.fixture
def make_instance(catalog: Catalog) -> Callable[..., Instance]:
    counter = iter(range(1, 1_000_000))

    def make(
        tenant: Tenant,
        *,
        created_by: Any,
        state: str = "running",
        instance_type: str = "gpu-h100x1",
        region: Region | None = None,
        **fields: Any,
    ) -> Instance:
        itype = catalog.instance_type(instance_type)
        return instance_row(
            tenant=tenant,
            name=fields.pop("name", f"held-{next(counter)}"),
            region=region or catalog.us_east,
            instance_type=itype,
            state=state,
            created_by=created_by,
            **fields,
        )

    return make
