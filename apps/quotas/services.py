"""Quota admission and quota requests.

Admission runs inside the caller's transaction: it locks the tenant's quota row (SELECT ... FOR UPDATE), so
concurrent launches and starts of one tenant queue up behind each other, then counts what the tenant's
instances hold. Whoever holds the lock sees every earlier admission committed, so the quota cannot be
exceeded however many requests arrive at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.core.errors import Conflict, InvalidInput
from apps.quotas import notifications
from apps.quotas.models import GpuQuota, QuotaRequest, QuotaRequestStatus, QuotaResource, TenantQuota
from apps.quotas.usage import Usage, usage_of


@dataclass(frozen=True)
class Demand:
    """What one instance needs."""

    gpu_type: Any  # GpuType or None
    gpus: int
    vcpu: int
    memory_gib: int
    region: Any
    new_instance: bool  # a launch counts against the instance quota; a start does not


class QuotaExceeded(Conflict):
    code = "quota_exceeded"


def quota_for(tenant: Any) -> TenantQuota:
    quota = TenantQuota.objects.filter(tenant=tenant).first()
    if quota is not None:
        return quota
    try:
        with transaction.atomic():
            return TenantQuota.objects.create(tenant=tenant, **settings.DEFAULT_TENANT_QUOTA)
    except IntegrityError:  # created concurrently
        return TenantQuota.objects.get(tenant=tenant)


def _refuse(resource: str, limit: int, used: int, requested: int, label: str) -> QuotaExceeded:
    return QuotaExceeded(
        f"Quota exceeded for {label}: limit {limit}, in use {used}, this request needs {requested}. "
        "Ask for an increase with a quota request.",
        details={"resource": resource, "limit": limit, "used": used, "requested": requested},
    )


def admit(*, tenant: Any, demand: Demand) -> Usage:
    """Admit `demand` for `tenant` or raise QuotaExceeded. Call inside a transaction that then writes the
    instance: the lock is held until that commit."""
    quota_for(tenant)
    quota = TenantQuota.objects.select_for_update().get(tenant=tenant)
    usage = usage_of(tenant)
    if demand.new_instance and usage.instances + 1 > quota.max_instances:
        raise _refuse("instances", quota.max_instances, usage.instances, 1, "instances")
    if demand.gpus and usage.gpus + demand.gpus > quota.max_gpus:
        raise _refuse("gpus", quota.max_gpus, usage.gpus, demand.gpus, "GPUs")
    if demand.gpus and demand.gpu_type is not None:
        for limit in GpuQuota.objects.filter(tenant=tenant, gpu_type=demand.gpu_type):
            if limit.region_id not in (None, demand.region.pk):
                continue
            used = usage.gpus_of_type(demand.gpu_type.pk, limit.region_id)
            if used + demand.gpus > limit.max_gpus:
                where = f" in {limit.region.slug}" if limit.region is not None else ""
                raise _refuse(
                    f"gpu_type:{demand.gpu_type.slug}",
                    limit.max_gpus,
                    used,
                    demand.gpus,
                    f"{demand.gpu_type.slug} GPUs{where}",
                )
    if usage.vcpu + demand.vcpu > quota.max_vcpu:
        raise _refuse("vcpu", quota.max_vcpu, usage.vcpu, demand.vcpu, "vCPU")
    if usage.memory_gib + demand.memory_gib > quota.max_memory_gib:
        raise _refuse("memory_gib", quota.max_memory_gib, usage.memory_gib, demand.memory_gib, "memory (GiB)")
    return usage


@transaction.atomic
def quota_request_create(
    *,
    actor: User,
    tenant: Any,
    resource: str,
    amount: int,
    reason: str,
    gpu_type: Any = None,
    region: Any = None,
) -> QuotaRequest:
    if resource == QuotaResource.GPU_TYPE and gpu_type is None:
        raise InvalidInput("Name the GPU type.", fields={"gpu_type": ["Required when resource is gpu_type."]})
    if resource != QuotaResource.GPU_TYPE and (gpu_type is not None or region is not None):
        raise InvalidInput(
            "gpu_type and region apply only to gpu_type requests.",
            fields={"gpu_type": ["Only for resource gpu_type."]},
        )
    if QuotaRequest.objects.filter(
        tenant=tenant, resource=resource, gpu_type=gpu_type, region=region, status=QuotaRequestStatus.PENDING
    ).exists():
        raise Conflict("A request for this resource is already pending.", code="quota_request_pending")
    request = QuotaRequest.objects.create(
        tenant=tenant,
        requested_by=actor,
        resource=resource,
        amount=amount,
        reason=reason,
        gpu_type=gpu_type,
        region=region,
    )
    audit_record(
        actor=actor,
        action="quota_request.create",
        target=request,
        tenant=tenant,
        changes={"resource": resource, "amount": amount, "gpu_type": gpu_type, "region": region},
    )
    transaction.on_commit(lambda: notifications.quota_request_created(request.pk))
    return request


def _apply_limit(request: QuotaRequest) -> dict[str, Any]:
    """Set the limit the request asked for; returns {"field": {"from", "to"}} for the audit."""
    if request.resource == QuotaResource.GPU_TYPE:
        limit, _ = GpuQuota.objects.select_for_update().get_or_create(
            tenant=request.tenant,
            gpu_type=request.gpu_type,
            region=request.region,
            defaults={"max_gpus": 0},
        )
        before = limit.max_gpus
        limit.max_gpus = request.amount
        limit.save(update_fields=["max_gpus"])
        return {f"gpu_type:{request.gpu_type}": {"from": before, "to": request.amount}}
    quota_for(request.tenant)
    quota = TenantQuota.objects.select_for_update().get(tenant=request.tenant)
    field = {
        "gpus": "max_gpus",
        "instances": "max_instances",
        "vcpu": "max_vcpu",
        "memory_gib": "max_memory_gib",
        "volume_gib": "max_volume_gib",
    }[request.resource]
    before = getattr(quota, field)
    setattr(quota, field, request.amount)
    quota.save(update_fields=[field, "updated_at"])
    return {field: {"from": before, "to": request.amount}}


@transaction.atomic
def quota_request_decide(
    *, actor: User, request: QuotaRequest, approve: bool, note: str = ""
) -> QuotaRequest:
    # of=("self",): gpu_type and region are nullable, and PostgreSQL refuses FOR UPDATE on an outer join.
    request = (
        QuotaRequest.objects.select_for_update(of=("self",))
        .select_related("tenant", "gpu_type", "region")
        .get(pk=request.pk)
    )
    if request.status != QuotaRequestStatus.PENDING:
        raise Conflict(f"This request is already {request.status}.", code="quota_request_decided")
    changes = _apply_limit(request) if approve else {}
    request.status = QuotaRequestStatus.APPROVED if approve else QuotaRequestStatus.DENIED
    request.decided_by, request.decided_at, request.decision_note = actor, timezone.now(), note
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])
    audit_record(
        actor=actor,
        action=f"quota_request.{'approve' if approve else 'deny'}",
        target=request,
        tenant=request.tenant,
        changes=changes,
        metadata={"note": note},
    )
    transaction.on_commit(lambda: notifications.quota_request_decided(request.pk))
    return request
