import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class TenantQuota(models.Model):
    """A tenant's limits. Also the row admission locks (SELECT ... FOR UPDATE) to serialize launches."""

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="quota")
    max_gpus = models.PositiveIntegerField(help_text="GPUs across all types and regions.")
    max_instances = models.PositiveIntegerField(help_text="Instances that are not terminated.")
    max_vcpu = models.PositiveIntegerField()
    max_memory_gib = models.PositiveIntegerField()
    max_volume_gib = models.PositiveIntegerField()
    max_object_storage_gib = models.PositiveIntegerField(
        help_text="Bytes stored in the tenant's buckets, in GiB; at or past it the tenant's keys may no "
        "longer write (docs/storage.md)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota:{self.tenant_id}"


class GpuQuota(models.Model):
    """GPUs of one type a tenant may hold, in one region or (region empty) across all regions."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="gpu_quotas")
    gpu_type = models.ForeignKey("catalog.GpuType", on_delete=models.CASCADE, related_name="+")
    region = models.ForeignKey(
        "catalog.Region", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    max_gpus = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "gpu_type", "region"], name="gpu_quota_unique"),
            models.UniqueConstraint(
                fields=["tenant", "gpu_type"],
                condition=models.Q(region__isnull=True),
                name="gpu_quota_unique_global",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.gpu_type_id}:{self.region_id or '*'}={self.max_gpus}"


class QuotaResource(models.TextChoices):
    GPUS = "gpus", "GPUs (all types)"
    GPU_TYPE = "gpu_type", "GPUs of one type"
    INSTANCES = "instances", "Instances"
    VCPU = "vcpu", "vCPU"
    MEMORY_GIB = "memory_gib", "Memory (GiB)"
    VOLUME_GIB = "volume_gib", "Volume storage (GiB)"
    OBJECT_STORAGE_GIB = "object_storage_gib", "Object storage (GiB)"


class QuotaRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class QuotaRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="quota_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    resource = models.CharField(max_length=32, choices=QuotaResource.choices)
    gpu_type = models.ForeignKey(
        "catalog.GpuType", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    region = models.ForeignKey(
        "catalog.Region", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    amount = models.PositiveIntegerField(help_text="The new limit asked for.")
    reason = models.TextField(max_length=2000)
    status = models.CharField(
        max_length=16, choices=QuotaRequestStatus.choices, default=QuotaRequestStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.resource}->{self.amount}"
