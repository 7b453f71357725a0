"""What a tenant's keys may do on the S3 service: funds, suspension and the byte quota (docs/storage.md
"Funds, suspension and the byte quota").

Two switches per tenant, each recorded on its ObjectStorageAccount and applied on the service through the
IAM API with the admin identity:

- **keys suspended** while the tenant is suspended or its money has run out (apps.core.funds, answered by
  billing): every key of the tenant, its own and its presign key, is set Inactive with UpdateAccessKey. The
  keys, their secrets and the data are kept; the service refuses any request signed with them (and so any
  presigned URL) until they are set Active again, which happens once the tenant is active and in funds (a
  top-up, a grant, a reactivation: billing and tenants send signals on commit, and the periodic check
  catches up with anything missed).
- **writes blocked** while the tenant's buckets held at least its byte quota (TenantQuota
  .max_object_storage_gib) at the last usage sample: the inline policies of its IAM users are replaced with
  ones without s3:PutObject, so no object can be added or uploaded in parts, while reading, listing and
  deleting (to get back under) still work; the full policies come back once it is under.

Every change for one tenant holds its account row (SELECT ... FOR UPDATE), like key creation, so a key
made meanwhile gets the state in force. Calls to the service come before the rows are written: a failure
rolls the rows back and the next check applies the same idempotent calls again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core import funds
from apps.quotas.services import quota_for
from apps.storage.objects import s3
from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

GIB = 1024**3
SUSPENDED_REASON = "tenant suspended"
FUNDS_REASON = "insufficient funds"


def stored_bytes(tenant: Tenant) -> int:
    """Bytes in the tenant's live buckets at their last usage sample."""
    total = Bucket.objects.filter(tenant=tenant, deleted_at__isnull=True).aggregate(
        total=Sum("size_bytes", default=0)
    )["total"]
    return int(total)


def quota_bytes(tenant: Tenant) -> int:
    return int(quota_for(tenant).max_object_storage_gib) * GIB


def used_gib(tenant: Tenant) -> int:
    """What the quota overview shows as used: started GiB, as billed (registered with apps.quotas.usage)."""
    return math.ceil(stored_bytes(tenant) / GIB)


@dataclass(frozen=True)
class Wanted:
    suspended_reason: str  # "" when the keys should work
    writes_blocked: bool
    stored_bytes: int
    quota_bytes: int
    funds_message: str = ""


def wanted(tenant: Tenant) -> Wanted:
    stored, limit = stored_bytes(tenant), quota_bytes(tenant)
    reason, message = "", ""
    if tenant.status == TenantStatus.SUSPENDED:
        reason = SUSPENDED_REASON
    else:
        message = funds.funds_exhausted(tenant=tenant) or ""
        reason = FUNDS_REASON if message else ""
    return Wanted(
        suspended_reason=reason,
        writes_blocked=stored >= limit,
        stored_bytes=stored,
        quota_bytes=limit,
        funds_message=message,
    )


def _set_keys(account: ObjectStorageAccount, *, active: bool) -> int:
    """Every live key of the tenant (and the presign key) Active or Inactive on the service, each row as it
    is done. Returns how many keys were changed."""
    keys = AccessKey.objects.filter(tenant_id=account.tenant_id, revoked_at__isnull=True)
    keys = keys.filter(suspended_at__isnull=not active)  # the ones not yet in the wanted state
    changed = 0
    now = timezone.now()
    for key in keys.order_by("pk"):
        if not s3.set_access_key_status(
            user_name=account.iam_user, access_key_id=key.access_key_id, active=active
        ):
            logger.warning("access key %s is missing on the storage service", key.access_key_id)
        key.suspended_at = None if active else now
        key.save(update_fields=["suspended_at"])
        changed += 1
    if account.presign_access_key_id:
        s3.set_access_key_status(
            user_name=account.presign_user, access_key_id=account.presign_access_key_id, active=active
        )
    return changed


def _set_policies(account: ObjectStorageAccount, *, writable: bool) -> None:
    s3.put_policy(user_name=account.iam_user, policy=s3.tenant_policy(account.prefix, writable=writable))
    s3.put_policy(user_name=account.presign_user, policy=s3.presign_policy(account.prefix, writable=writable))


def _reconcile(account: ObjectStorageAccount, want: Wanted) -> list[str]:
    tenant = account.tenant
    done: list[str] = []
    suspend = bool(want.suspended_reason)
    keys_off = AccessKey.objects.filter(tenant=tenant, revoked_at__isnull=True, suspended_at__isnull=suspend)
    new_reason = want.suspended_reason != account.keys_suspended_reason
    if suspend != (account.keys_suspended_at is not None) or new_reason or keys_off.exists():
        changed = _set_keys(account, active=not suspend)
        moved = suspend != (account.keys_suspended_at is not None)
        account.keys_suspended_at = (account.keys_suspended_at or timezone.now()) if suspend else None
        account.keys_suspended_reason = want.suspended_reason
        account.save(update_fields=["keys_suspended_at", "keys_suspended_reason"])
        if moved or changed:
            action = "object_storage.keys_suspend" if suspend else "object_storage.keys_restore"
            metadata: dict[str, Any] = {"keys": changed}
            if suspend:
                metadata.update(reason=want.suspended_reason, detail=want.funds_message)
            audit_record(actor=None, action=action, target=account, tenant=tenant, metadata=metadata)
            done.append(action)
    if want.writes_blocked != (account.writes_blocked_at is not None):
        _set_policies(account, writable=not want.writes_blocked)
        account.writes_blocked_at = timezone.now() if want.writes_blocked else None
        account.save(update_fields=["writes_blocked_at"])
        action = "object_storage.writes_block" if want.writes_blocked else "object_storage.writes_unblock"
        audit_record(
            actor=None,
            action=action,
            target=account,
            tenant=tenant,
            metadata={"stored_bytes": want.stored_bytes, "quota_bytes": want.quota_bytes},
        )
        done.append(action)
    return done


def access_reconcile(*, tenant_id: Any) -> list[str]:
    """Bring one tenant's keys and policies on the service in line with its status, funds and byte quota.
    Returns the audit actions of what changed. Raises s3.StorageError when the service fails (nothing is
    recorded then; the next check repeats the calls)."""
    if not s3.configured():
        return []
    with transaction.atomic():
        account = (
            ObjectStorageAccount.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .filter(tenant_id=tenant_id, closed_at__isnull=True)
            .first()
        )
        if account is None or account.tenant.status == TenantStatus.CLOSED:
            return []  # closing revokes a closed tenant's keys for good (apps/storage/closing.py)
        return _reconcile(account, wanted(account.tenant))


def accounts_to_check() -> list[Any]:
    """Tenants with something on the service that a check could have to change: a live key or a presign key,
    or a suspension or block to lift."""
    live_key = AccessKey.objects.filter(revoked_at__isnull=True).values("tenant_id")
    has_something = (
        Q(tenant_id__in=live_key)
        | ~Q(presign_access_key_id="")
        | Q(keys_suspended_at__isnull=False)
        | Q(writes_blocked_at__isnull=False)
    )
    accounts = ObjectStorageAccount.objects.filter(has_something, closed_at__isnull=True).exclude(
        tenant__status=TenantStatus.CLOSED
    )
    return list(accounts.order_by("pk").values_list("tenant_id", flat=True))


def enforce_access() -> dict[str, int]:
    """The periodic check (every OBJECT_STORAGE_ACCESS_CHECK_SECONDS, and after each usage sample)."""
    checked = changed = 0
    if not s3.configured():
        return {"checked": 0, "changed": 0}
    for tenant_id in accounts_to_check():
        try:
            actions = access_reconcile(tenant_id=tenant_id)
        except s3.Unavailable:
            logger.warning("object storage unavailable; the access check stopped for this run")
            break
        except s3.StorageError as exc:
            logger.warning("access check of tenant %s failed: %s", tenant_id, exc.code or exc)
            continue
        checked += 1
        changed += bool(actions)
    return {"checked": checked, "changed": changed}


def queue_reconcile(tenant_id: Any) -> None:
    """Ask the worker to check one tenant now (signal receivers call this after the change committed). Only
    tenants that ever used object storage have anything to change."""
    if not ObjectStorageAccount.objects.filter(tenant_id=tenant_id, closed_at__isnull=True).exists():
        return
    from apps.storage.objects.tasks import reconcile_access

    reconcile_access.delay(str(tenant_id))


def on_funds_changed(sender: Any, *, tenant_id: Any, **kwargs: Any) -> None:
    queue_reconcile(tenant_id)


def on_tenant_status_changed(sender: Any, *, tenant_id: Any, status: str, **kwargs: Any) -> None:
    if status != TenantStatus.CLOSED:  # closing has its own path
        queue_reconcile(tenant_id)


def presign_credentials(account: ObjectStorageAccount) -> tuple[str, str]:
    """The tenant's presign key, made on first use: an IAM user of its own with the presign policy (get
    only while writes are blocked) and one key, whose secret is stored encrypted. Raises s3.StorageError."""
    existing = account.presign_credentials()
    if existing is not None:
        return existing
    with transaction.atomic():
        locked = ObjectStorageAccount.objects.select_for_update().get(pk=account.pk)
        existing = locked.presign_credentials()
        if existing is not None:  # made by a concurrent request
            return existing
        writable = locked.writes_blocked_at is None
        s3.ensure_user(
            user_name=locked.presign_user, policy=s3.presign_policy(locked.prefix, writable=writable)
        )
        access_key_id, secret = s3.create_access_key(locked.presign_user)
        try:
            if locked.keys_suspended_at is not None:
                s3.set_access_key_status(
                    user_name=locked.presign_user, access_key_id=access_key_id, active=False
                )
            locked.set_presign_credentials(access_key_id, secret)
            with transaction.atomic():
                locked.save(update_fields=["presign_access_key_id", "presign_secret_encrypted"])
        except Exception:
            s3.delete_access_key(user_name=locked.presign_user, access_key_id=access_key_id)
            raise
    account.presign_access_key_id = locked.presign_access_key_id
    account.presign_secret_encrypted = locked.presign_secret_encrypted
    return access_key_id, secret


def presign_key_delete(account: ObjectStorageAccount) -> bool:
    """Delete the presign key on the service and forget it (a closed tenant). Returns whether there was
    one."""
    if not account.presign_access_key_id:
        return False
    s3.delete_access_key(user_name=account.presign_user, access_key_id=account.presign_access_key_id)
    account.set_presign_credentials("", "")
    account.save(update_fields=["presign_access_key_id", "presign_secret_encrypted"])
    return True
