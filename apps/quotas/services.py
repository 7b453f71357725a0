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
from apps.audit.services import audit_record, diff
from apps.core import metrics
from apps.core.errors import Conflict, InvalidInput
from apps.quotas import notifications
from apps.quotas.models import GpuQuota, QuotaRequest, QuotaRequestStatus, QuotaResource, TenantQuota
from apps.quotas.signals import quota_changed
from apps.quotas.usage import usage_of


@dataclass(frozen=True)
class Demand:
    """What one instance needs, or (volume_gib alone) what a new or grown volume adds."""

    gpu_type: Any = None  # GpuType or None
    gpus: int = 0
    vcpu: int = 0
    memory_gib: int = 0
    region: Any = None
    new_instance: bool = False  # a launch counts against the instance quota; a start does not
    new_instances: int = 0  # a cluster's launch: its nodes, each an instance (overrides new_instance)
    volume_gib: int = 0


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
    metrics.refused(f"quota_{resource.split(':')[0]}")
    return QuotaExceeded(
        f"Quota exceeded for {label}: limit {limit}, in use {used}, this request needs {requested}. "
        "Ask for an increase with a quota request.",
        details={"resource": resource, "limit": limit, "used": used, "requested": requested},
    )


def _locked_quota(tenant: Any) -> TenantQuota:
    """The tenant's quota row, locked: one statement when it exists (every tenant after its first launch)."""
    quota = TenantQuota.objects.select_for_update().filter(tenant=tenant).first()
    if quota is not None:
        return quota
    quota_for(tenant)
    return TenantQuota.objects.select_for_update().get(tenant=tenant)


def admit(*, tenant: Any, demand: Demand) -> None:
    """Admit `demand` for `tenant` or raise QuotaExceeded. Call inside a transaction that then writes the
    instance: the lock is held until that commit. Only what the demand asks for is counted (an instance's
    compute, or a volume's GiB), each in one statement over the tenant's live rows (docs/instances.md
    "Admission cost")."""
    quota = _locked_quota(tenant)
    new = demand.new_instances or int(demand.new_instance)
    computes = bool(new or demand.gpus or demand.vcpu or demand.memory_gib)
    usage = usage_of(
        tenant, counted_by=[*(["instances"] if computes else []), *(["volumes"] if demand.volume_gib else [])]
    )
    if new and usage.instances + new > quota.max_instances:
        raise _refuse("instances", quota.max_instances, usage.instances, new, "instances")
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
    if demand.vcpu and usage.vcpu + demand.vcpu > quota.max_vcpu:
        raise _refuse("vcpu", quota.max_vcpu, usage.vcpu, demand.vcpu, "vCPU")
    if demand.memory_gib and usage.memory_gib + demand.memory_gib > quota.max_memory_gib:
        raise _refuse("memory_gib", quota.max_memory_gib, usage.memory_gib, demand.memory_gib, "memory (GiB)")
    if demand.volume_gib and usage.volume_gib + demand.volume_gib > quota.max_volume_gib:
        raise _refuse(
            "volume_gib", quota.max_volume_gib, usage.volume_gib, demand.volume_gib, "volume storage (GiB)"
        )


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
        "object_storage_gib": "max_object_storage_gib",
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
    if approve:
        _announce(request.tenant_id)
    return request


QUOTA_FIELDS = (
    "max_gpus",
    "max_instances",
    "max_vcpu",
    "max_memory_gib",
    "max_volume_gib",
    "max_object_storage_gib",
)
MAX_LIMIT = 100_000  # the largest limit a quota request may ask for


@transaction.atomic
def quota_set(*, actor: User, tenant: Any, limits: dict[str, Any], note: str = "") -> TenantQuota:
    """Staff set a tenant's limits directly (outside a quota request). Lowering a limit below what the
    tenant holds stops nothing: it only refuses the next launch or start."""
    values: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    for name, raw in limits.items():
        if name not in QUOTA_FIELDS:
            errors[name] = ["Not a quota limit."]
            continue
        try:
            value = int(str(raw).strip())
        except ValueError:
            errors[name] = ["Enter a whole number."]
            continue
        if not 0 <= value <= MAX_LIMIT:
            errors[name] = [f"Must be between 0 and {MAX_LIMIT}."]
            continue
        values[name] = value
    if errors:
        name, problems = next(iter(errors.items()))
        raise InvalidInput(f"{name}: {problems[0]}", fields=errors)
    quota_for(tenant)
    quota = TenantQuota.objects.select_for_update().get(tenant=tenant)
    changes = diff({name: getattr(quota, name) for name in values}, values)
    if changes:
        for name, value in values.items():
            setattr(quota, name, value)
        quota.save(update_fields=[*values, "updated_at"])
        audit_record(
            actor=actor,
            action="quota.set",
            target=quota,
            tenant=tenant,
            changes=changes,
            metadata={"note": note},
        )
        _announce(tenant.pk)
    return quota


def _announce(tenant_id: Any) -> None:
    transaction.on_commit(lambda: quota_changed.send(sender=TenantQuota, tenant_id=str(tenant_id)))
