"""bench/seed.tenant: a partial quota (burst_admission's small tenants) limits what it names and leaves
every other limit large; it used to leave the rest empty and the benchmark failed on its first tenant."""

from __future__ import annotations

import pytest

from apps.quotas.models import TenantQuota
from bench import burst_admission, seed


@pytest.mark.django_db
def test_a_partial_quota_keeps_the_other_limits() -> None:
    who = seed.tenant("bench-small-quota", quota=burst_admission.SMALL_QUOTA)
    quota = TenantQuota.objects.get(tenant=who.tenant)
    assert quota.max_vcpu == burst_admission.SMALL_QUOTA["max_vcpu"]
    assert quota.max_instances == burst_admission.SMALL_QUOTA["max_instances"]
    assert quota.max_object_storage_gib == seed.BIG_QUOTA["max_object_storage_gib"]
