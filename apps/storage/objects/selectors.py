"""Reads for object storage; every one takes the tenant."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount
from apps.tenants.models import Tenant


def buckets_of(tenant: Tenant) -> QuerySet[Bucket]:
    """The tenant's live buckets (deleted ones stay as rows for the ledger and the audit log)."""
    return Bucket.objects.filter(tenant=tenant, deleted_at__isnull=True)


def access_keys_of(tenant: Tenant, *, include_revoked: bool = False) -> QuerySet[AccessKey]:
    keys = AccessKey.objects.filter(tenant=tenant)
    return keys if include_revoked else keys.filter(revoked_at__isnull=True)


def account_of(tenant: Tenant) -> ObjectStorageAccount | None:
    """The tenant's namespace on the service (with its suspension and write block), if it has one yet."""
    return ObjectStorageAccount.objects.filter(tenant=tenant).first()
