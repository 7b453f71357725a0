"""Fixtures for the quota tests: the seeded catalog, limits set directly, and instance rows written without
admission (to stand for what a tenant already holds)."""

from __future__ import annotations

from apps.quotas.models import TenantQuota
from apps.tenants.models import Tenant

# Roomy enough that only the limit a test sets can refuse a launch.
ROOMY = {"max_gpus": 1000, "max_instances": 1000, "max_vcpu": 100_000, "max_memory_gib": 1_000_000}


def set_quota(tenant: Tenant, **limits: int) -> TenantQuota:
    values = {**ROOMY, "max_volume_gib": 1000, "max_object_storage_gib": 1000, **limits}
    quota, _ = TenantQuota.objects.update_or_create(tenant=tenant, defaults=values)
    return quota
