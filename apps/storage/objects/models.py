"""Object storage per tenant on a shared S3-compatible service (docs/storage.md).

The service holds the data; these rows hold what we promise about it: which tenant owns which bucket (and
under which physical name), which access keys exist for a tenant, and the last sampled size of each bucket.
Secrets of access keys are shown once and never stored here.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core import crypto
from apps.storage.objects import names


class ObjectStorageAccount(models.Model):
    """A tenant's namespace on the service: its bucket-name prefix and the IAM user its access keys belong to.

    Created on first use. The prefix is stored (not derived from settings), so changing the deployment
    prefix later never orphans existing buckets.
    """

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.PROTECT, related_name="object_storage")
    prefix = models.CharField(max_length=24, unique=True)  # "gpc-k3x9a2b1-"
    iam_user = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When the tenant was closed: its keys are revoked, its buckets are no longer billed, and they are
    # deleted once OBJECT_STORAGE_CLOSED_RETENTION_DAYS have passed (docs/storage.md "Closing a tenant").
    closed_at = models.DateTimeField(null=True, blank=True)
    # The key presigned URLs are signed with (apps/storage/objects/access.py): a key of the tenant's presign
    # IAM user, whose policy reaches only the tenant's buckets. Made on the first presign; its secret is kept
    # encrypted at rest (apps/core/crypto.py), since every presign needs it.
    presign_access_key_id = models.CharField(max_length=128, blank=True)
    presign_secret_encrypted = models.TextField(blank=True, editable=False)
    # While set, every key of the tenant (its own and the presign key) is Inactive on the service: the
    # tenant's money ran out or it is suspended. Cleared when that is over (docs/storage.md).
    keys_suspended_at = models.DateTimeField(null=True, blank=True)
    keys_suspended_reason = models.CharField(max_length=300, blank=True)
    # While set, the tenant's policies lack s3:PutObject: its buckets held at least its byte quota at the
    # last usage sample.
    writes_blocked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.prefix}"

    @property
    def presign_user(self) -> str:
        return names.presign_user_name(self.prefix)

    def presign_credentials(self) -> tuple[str, str] | None:
        if not self.presign_access_key_id:
            return None
        return self.presign_access_key_id, crypto.decrypt(self.presign_secret_encrypted, keys=crypto.STORAGE)

    def set_presign_credentials(self, access_key_id: str, secret: str) -> None:
        self.presign_access_key_id = access_key_id
        self.presign_secret_encrypted = crypto.encrypt(secret, keys=crypto.STORAGE) if secret else ""


class Bucket(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="buckets")
    name = models.CharField(max_length=40)
    physical_name = models.CharField(max_length=63)
    # Key/value labels the customer sets (apps/core/tags.py validates them); copied into the usage ledger
    # when the resource is metered, so usage and budgets can be grouped by them (docs/billing.md "Tags").
    tags = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # The last usage sample (apps/storage/objects/usage.py); listing a bucket's objects on every API read
    # would cost as much as the bucket is large.
    size_bytes = models.BigIntegerField(default=0)
    object_count = models.BigIntegerField(default=0)
    usage_sampled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=Q(deleted_at__isnull=True),
                name="bucket_unique_live_name",
            ),
            models.UniqueConstraint(
                fields=["physical_name"],
                condition=Q(deleted_at__isnull=True),
                name="bucket_unique_live_physical_name",
            ),
        ]
        indexes = [models.Index(fields=["deleted_at"])]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.name}"


class AccessKey(models.Model):
    """An S3 access key of the tenant's IAM user; its policy reaches only the tenant's buckets."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="storage_access_keys")
    access_key_id = models.CharField(max_length=128, unique=True)
    name = models.CharField(max_length=100)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Inactive on the service while the tenant's keys are suspended (ObjectStorageAccount.keys_suspended_at);
    # unlike a revoked key it works again, with the same secret, once that is over.
    suspended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "created_at"]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.access_key_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_suspended(self) -> bool:
        return self.revoked_at is None and self.suspended_at is not None
