from typing import Any

from django.db.models import QuerySet

from apps.quotas.models import GpuQuota, QuotaRequest
from apps.quotas.services import quota_for
from apps.quotas.usage import measured, usage_of


def quota_overview(*, tenant: Any) -> dict[str, Any]:
    """Every limit of the tenant beside what it uses now."""
    quota = quota_for(tenant)
    usage = usage_of(tenant)
    gpu_limits = GpuQuota.objects.filter(tenant=tenant).select_related("gpu_type", "region").order_by("pk")
    return {
        "limits": [
            {"resource": "instances", "limit": quota.max_instances, "used": usage.instances},
            {"resource": "gpus", "limit": quota.max_gpus, "used": usage.gpus},
            {"resource": "vcpu", "limit": quota.max_vcpu, "used": usage.vcpu},
            {"resource": "memory_gib", "limit": quota.max_memory_gib, "used": usage.memory_gib},
            {"resource": "volume_gib", "limit": quota.max_volume_gib, "used": usage.volume_gib},
            {
                "resource": "object_storage_gib",
                "limit": quota.max_object_storage_gib,
                "used": measured("object_storage_gib", tenant),
            },
        ],
        "gpu_types": [
            {
                "gpu_type": limit.gpu_type.slug,
                "region": limit.region.slug if limit.region is not None else None,
                "limit": limit.max_gpus,
                "used": usage.gpus_of_type(limit.gpu_type_id, limit.region_id),
            }
            for limit in gpu_limits
        ],
    }


def quota_requests_of(*, tenant: Any) -> QuerySet[QuotaRequest]:
    return QuotaRequest.objects.filter(tenant=tenant).select_related("requested_by", "gpu_type", "region")
