"""What closing a tenant does to its storage (docs/storage.md "Closing a tenant").

tenant_close (apps/tenants/services.py) calls `tenant_storage_close` inside its transaction:

- every volume that is not being deleted begins its deletion (reason "tenant closed"), so its bill ends at
  the close; the operator deletes the claims (the tenant's namespace is collected as well);
- the tenant's object storage account records the close time, which starts the retention of its buckets;
- once the close has committed, the task `close_tenant_storage` revokes every active access key on the
  service, and deletes the tenant's presign key, so the network calls happen outside the transaction and
  are retried with backoff.

Buckets are kept, unbilled (usage sampling skips closed tenants) and unreachable with the revoked keys, for
OBJECT_STORAGE_CLOSED_RETENTION_DAYS; then the hourly `sweep_closed_tenants` deletes them with their objects.
The sweep also finishes any close that did not complete: a closed tenant that still has an active key, a
volume not being deleted, or an account without a close time (closed before this existed, or the task gave
up) is closed again with `finish_close`, which is idempotent.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core.errors import DomainError
from apps.storage.models import Volume, VolumeState
from apps.storage.objects import access, s3
from apps.storage.objects.models import AccessKey, ObjectStorageAccount
from apps.storage.objects.services import (
    StorageUnavailable,
    access_keys_revoke_all,
    account_close,
    bucket_delete,
    buckets_past_retention,
)
from apps.storage.services import TENANT_CLOSED_REASON, volumes_delete_for_closed_tenant
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

RETENTION_REASON = "retention after the tenant was closed"


def tenant_storage_close(*, tenant: Tenant) -> None:
    """Call inside tenant_close's transaction, after the tenant row is locked and marked closed."""
    volumes_delete_for_closed_tenant(tenant=tenant)
    account_close(tenant=tenant)
    tenant_id = str(tenant.pk)

    def queue() -> None:
        from apps.storage.tasks import close_tenant_storage

        close_tenant_storage.delay(tenant_id)

    transaction.on_commit(queue)


def finish_close(tenant_id: Any) -> int:
    """Idempotent: the volumes' deletion begun and the close time recorded (if the close did not), then
    every active access key revoked on the service. Returns how many keys were revoked. Raises
    StorageUnavailable when the service fails (the task retries; keys revoked so far stay revoked)."""
    tenant = Tenant.objects.filter(pk=tenant_id, status=TenantStatus.CLOSED).first()
    if tenant is None:
        return 0
    with transaction.atomic():
        Tenant.objects.select_for_update().get(pk=tenant.pk)  # lock order: the tenant, then its volumes
        volumes_delete_for_closed_tenant(tenant=tenant)
        account_close(tenant=tenant)
    revoked = access_keys_revoke_all(tenant=tenant, reason=TENANT_CLOSED_REASON)
    account = ObjectStorageAccount.objects.filter(tenant=tenant).first()
    if account is not None:
        try:
            access.presign_key_delete(account)
        except s3.StorageError as exc:
            raise StorageUnavailable("The object storage service refused the request.") from exc
    return revoked


def unfinished_closes() -> list[Any]:
    """Ids of closed tenants whose storage is not fully closed."""
    closed = {"tenant__status": TenantStatus.CLOSED}
    ids: set[Any] = set()
    ids.update(
        AccessKey.objects.filter(revoked_at__isnull=True, **closed).values_list("tenant_id", flat=True)
    )
    ids.update(
        Volume.objects.filter(**closed)
        .exclude(state__in=(VolumeState.DELETING, VolumeState.DELETED))
        .values_list("tenant_id", flat=True)
    )
    ids.update(
        ObjectStorageAccount.objects.filter(closed_at__isnull=True, **closed).values_list(
            "tenant_id", flat=True
        )
    )
    ids.update(
        ObjectStorageAccount.objects.filter(**closed)
        .exclude(presign_access_key_id="")
        .values_list("tenant_id", flat=True)
    )
    return sorted(ids, key=str)


def sweep_closed_tenants(*, now: datetime | None = None) -> dict[str, int]:
    """The hourly task: finish unfinished closes, then delete the buckets whose retention has passed."""
    now = now or timezone.now()
    finished = 0
    for tenant_id in unfinished_closes():
        try:
            finish_close(tenant_id)
        except DomainError as exc:  # the service is down or off: the next sweep tries again
            logger.warning("closing the storage of tenant %s failed: %s", tenant_id, exc.code)
            continue
        finished += 1
    deleted = 0
    if s3.configured():
        for bucket in buckets_past_retention(now=now).order_by("pk"):
            try:
                bucket_delete(actor=None, bucket=bucket, force=True, reason=RETENTION_REASON)
            except StorageUnavailable:
                logger.warning("object storage unavailable; deleting closed tenants' buckets stopped")
                break
            except DomainError as exc:
                logger.warning("deleting bucket %s failed: %s", bucket.physical_name, exc.code)
                continue
            deleted += 1
    return {"closes_finished": finished, "buckets_deleted": deleted}
