"""Writes for object storage: buckets and access keys, each audited.

The database and the S3 service cannot share a transaction, so each write orders its two halves so that a
failure leaves no half-made object behind:

- bucket_create inserts the row, then creates the bucket as the last step inside the same transaction: if
  the service refuses, the exception rolls the row (and its audit event) back. Should the transaction fail
  after the bucket was created, the next create of that name adopts the empty bucket (the service answers
  BucketAlreadyOwnedByYou, which counts as created).
- bucket_delete deletes on the service first and then marks the row deleted; a bucket already gone counts
  as deleted, so a retry after a failure in between completes it.
- access_key_create creates the key on the service, then inserts the row; if the insert fails the key is
  deleted again (compensation), so no key exists that we do not list. Should that delete fail as well, the
  insert's error is raised and the stray key's id is logged for an operator.
- access_key_revoke deletes the key on the service, then marks the row revoked; retrying is safe.

Creating a bucket or a key, and presigning an upload, need funds (apps.core.funds, answered by billing: 402
insufficient_funds), like creating a volume. What keys may do afterwards (suspended when the money runs
out, no writes past the byte quota) is apps/storage/objects/access.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core import build_status, funds
from apps.core import tags as core_tags
from apps.core.errors import Conflict, DomainError, Forbidden, InvalidInput, PaymentRequired
from apps.storage.objects import access, names, s3
from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)


class StorageUnavailable(DomainError):
    status_code = 503
    code = "object_storage_unavailable"
    retry_after = 30  # a service that is down or still starting: worth trying again shortly


class StorageNotConfigured(DomainError):
    status_code = 503
    code = "object_storage_not_configured"


@contextmanager
def _service() -> Iterator[None]:
    """`with _service():` turns the S3 module's errors into API errors (503 when the service is down)."""
    try:
        yield
    except s3.NotConfigured as exc:
        raise StorageNotConfigured("Object storage is not configured on this installation.") from exc
    except s3.Unavailable as exc:
        # `make run` serves before its local S3 server is built: say so rather than "unavailable".
        message = build_status.object_storage_note() or "The object storage service is unavailable"
        raise StorageUnavailable(f"{message.rstrip('.')}; try again later.") from exc
    except s3.LimitExceeded as exc:
        raise Conflict("The object storage service refused: limit reached.", code="storage_limit") from exc
    except s3.StorageError as exc:
        logger.error("object storage refused a call: %s", exc)
        raise StorageUnavailable("The object storage service refused the request.") from exc


def storage_account(tenant: Tenant) -> ObjectStorageAccount:
    """The tenant's namespace on the service, created on first use (no call to the service)."""
    existing = ObjectStorageAccount.objects.filter(tenant=tenant).first()
    if existing is not None:
        return existing
    deployment = str(settings.OBJECT_STORAGE["BUCKET_PREFIX"])
    errors = names.deployment_prefix_errors(deployment)
    if errors:
        raise StorageNotConfigured(errors[0])
    for _ in range(5):
        prefix = names.new_tenant_prefix(deployment)
        try:
            with transaction.atomic():
                return ObjectStorageAccount.objects.create(
                    tenant=tenant, prefix=prefix, iam_user=names.iam_user_name(prefix)
                )
        except IntegrityError:
            found = ObjectStorageAccount.objects.filter(tenant=tenant).first()
            if found is not None:  # a concurrent request created it
                return found
    raise StorageUnavailable("Could not allocate a bucket prefix; try again.")


def _check_name(name: str) -> None:
    errors = names.name_errors(name)
    if errors:
        raise InvalidInput(f"name: {errors[0]}", fields={"name": errors})


def bucket_create(*, actor: Any, tenant: Tenant, name: str, tags: Any = None) -> Bucket:
    _check_name(name)
    checked_tags = core_tags.check_tags(tags)
    with _service():
        s3.config()  # refuse before writing anything when object storage is off
    funds.require_funds(tenant=tenant)
    account = storage_account(tenant)
    with transaction.atomic():
        # Serializes creates of one tenant, so the per-tenant limit cannot be overshot.
        ObjectStorageAccount.objects.select_for_update().get(pk=account.pk)
        live = Bucket.objects.filter(tenant=tenant, deleted_at__isnull=True)
        if live.filter(name=name).exists():
            raise Conflict(
                f"A bucket named {name} already exists.", code="bucket_exists", fields={"name": ["Taken."]}
            )
        limit = settings.OBJECT_STORAGE_MAX_BUCKETS_PER_TENANT
        used = live.count()
        if used >= limit:
            raise Conflict(
                f"The tenant has {used} buckets, the most it may have.",
                code="quota_exceeded",
                details={"resource": "buckets", "limit": limit, "used": used, "requested": 1},
            )
        bucket = Bucket.objects.create(
            tenant=tenant,
            name=name,
            physical_name=names.physical_name(account.prefix, name),
            tags=checked_tags,
            created_by=actor,
        )
        audit_record(
            actor=actor,
            action="bucket.create",
            target=bucket,
            tenant=tenant,
            metadata={
                "name": name,
                "physical_name": bucket.physical_name,
                **({"tags": checked_tags} if checked_tags else {}),
            },
        )
        with _service():
            try:
                s3.create_bucket(bucket.physical_name)
            except s3.BucketTaken as exc:
                raise Conflict(
                    "The storage service already has a bucket of that name.", code="bucket_exists"
                ) from exc
    return bucket


@transaction.atomic
def bucket_tags_update(*, actor: Any, bucket: Bucket, changes: Any) -> Bucket:
    """Change the bucket's tags by a merge patch (apps/core/tags.py): a database write only, no call to the
    storage service. Storage sampled from now on carries the new tags. Audited as bucket.tags."""
    patch = core_tags.check_changes(changes)
    locked = Bucket.objects.select_for_update().filter(pk=bucket.pk, deleted_at__isnull=True).first()
    if locked is None:
        raise Conflict("The bucket was deleted.", code="invalid_state")
    before = dict(locked.tags)
    after = core_tags.merged(before, patch)
    if after == before:
        return locked
    locked.tags = after
    locked.save(update_fields=["tags"])
    audit_record(
        actor=actor,
        action="bucket.tags",
        target=locked,
        tenant=bucket.tenant,
        changes={"tags": {"from": before, "to": after}},
    )
    return locked


def bucket_delete(*, actor: Any, bucket: Bucket, force: bool = False, reason: str = "") -> None:
    """Delete an empty bucket; with force, its objects first. 409 bucket_not_empty otherwise."""
    with _service():
        deleted_objects = 0
        try:
            if force:
                deleted_objects = s3.empty_bucket(bucket.physical_name)
            elif not s3.bucket_is_empty(bucket.physical_name):
                raise _not_empty(bucket)
            s3.delete_bucket(bucket.physical_name)
        except s3.NoSuchBucket:
            pass  # gone already: finish the deletion here
        except s3.BucketNotEmpty as exc:  # an object arrived between the check and the delete
            raise _not_empty(bucket) from exc
    with transaction.atomic():
        bucket.deleted_at = timezone.now()
        bucket.save(update_fields=["deleted_at"])
        audit_record(
            actor=actor,
            action="bucket.delete",
            target=bucket,
            tenant=bucket.tenant,
            metadata={
                "name": bucket.name,
                "force": force,
                "deleted_objects": deleted_objects,
                **({"reason": reason} if reason else {}),
            },
        )


def _not_empty(bucket: Bucket) -> Conflict:
    return Conflict(
        f"The bucket {bucket.name} is not empty; delete its objects first or pass force=true.",
        code="bucket_not_empty",
    )


def bucket_presign(
    *, bucket: Bucket, method: str, key: str, expires_in: int, content_length: int | None = None
) -> str:
    """A URL for one object, signed with the tenant's presign key (never the admin identity), so the
    service applies the tenant's policy and key status to every use. An upload needs funds and names its
    size, which must fit in what is left of the byte quota; the URL accepts exactly that many bytes."""
    with _service():
        s3.config()
    tenant = bucket.tenant
    account = storage_account(tenant)
    _refuse_if_suspended(account)
    if method == "put":
        if content_length is None:
            raise InvalidInput(
                "content_length: a presigned upload names its size in bytes.",
                fields={"content_length": ["Required for method put."]},
            )
        funds.require_funds(tenant=tenant)
        _check_room(tenant, account, content_length)
    with _service():
        credentials = access.presign_credentials(account)
        url = s3.presign(
            method=method,
            bucket=bucket.physical_name,
            key=key,
            expires_in=expires_in,
            credentials=credentials,
            content_length=content_length if method == "put" else None,
        )
    return url


def _refuse_if_suspended(account: ObjectStorageAccount) -> None:
    if account.keys_suspended_at is None:
        return
    if account.keys_suspended_reason == access.SUSPENDED_REASON:
        raise Forbidden("The tenant is suspended: its storage keys do not work.", code="tenant_suspended")
    raise PaymentRequired(
        "The tenant's money has run out: its storage keys and presigned URLs are suspended (its data is "
        "kept) until it is in funds again."
    )


def _check_room(tenant: Tenant, account: ObjectStorageAccount, size: int) -> None:
    """Refuse an upload that would take the tenant's buckets past its byte quota (409 quota_exceeded)."""
    used, limit = access.stored_bytes(tenant), access.quota_bytes(tenant)
    if account.writes_blocked_at is None and used + size <= limit:
        return
    raise Conflict(
        f"Quota exceeded for object storage: {limit // access.GIB} GiB, of which {used} bytes are stored "
        f"(last usage sample); this upload needs {size} bytes. Delete objects or ask for a quota increase.",
        code="quota_exceeded",
        details={
            "resource": "object_storage_gib",
            "limit": limit // access.GIB,
            "used": access.used_gib(tenant),
            "requested": -(-size // access.GIB),
            "limit_bytes": limit,
            "used_bytes": used,
            "requested_bytes": size,
        },
    )


@dataclass(frozen=True)
class NewAccessKey:
    key: AccessKey
    secret_access_key: str  # shown once, in the create response; we never store it


def access_key_create(*, actor: Any, tenant: Tenant, name: str) -> NewAccessKey:
    with _service():
        s3.config()
    funds.require_funds(tenant=tenant)
    account = storage_account(tenant)
    with transaction.atomic():
        # Also serializes with apps/storage/objects/access.py, so the key gets the state in force.
        account = ObjectStorageAccount.objects.select_for_update().get(pk=account.pk)
        limit = settings.OBJECT_STORAGE_MAX_ACCESS_KEYS_PER_TENANT
        used = AccessKey.objects.filter(tenant=tenant, revoked_at__isnull=True).count()
        if used >= limit:
            raise Conflict(
                f"The tenant has {used} active access keys, the most it may have; revoke one first.",
                code="quota_exceeded",
                details={"resource": "access_keys", "limit": limit, "used": used, "requested": 1},
            )
        writable = account.writes_blocked_at is None
        suspended = account.keys_suspended_at is not None
        with _service():
            s3.ensure_user(
                user_name=account.iam_user, policy=s3.tenant_policy(account.prefix, writable=writable)
            )
            access_key_id, secret = s3.create_access_key(account.iam_user)
        try:
            with transaction.atomic():
                if suspended:  # the others are suspended: so is this one, until they come back together
                    with _service():
                        s3.set_access_key_status(
                            user_name=account.iam_user, access_key_id=access_key_id, active=False
                        )
                key = AccessKey.objects.create(
                    tenant=tenant,
                    access_key_id=access_key_id,
                    name=name,
                    created_by=actor,
                    suspended_at=timezone.now() if suspended else None,
                )
                audit_record(
                    actor=actor,
                    action="storage_access_key.create",
                    target=key,
                    tenant=tenant,
                    metadata={"name": name, "access_key_id": access_key_id},
                )
        except Exception:
            _compensate_key(user_name=account.iam_user, access_key_id=access_key_id)
            raise
    return NewAccessKey(key=key, secret_access_key=secret)


def _compensate_key(*, user_name: str, access_key_id: str) -> None:
    """Delete a key whose row could not be written. Should the service refuse that too, the insert's own
    error is the one to report: log the stray key (its id only, never the secret) for an operator."""
    try:
        s3.delete_access_key(user_name=user_name, access_key_id=access_key_id)
    except s3.StorageError as exc:
        logger.error(
            "access key %s of %s was created but not recorded, and deleting it failed (%s); delete it on "
            "the storage service",
            access_key_id,
            user_name,
            exc.code or type(exc).__name__,
        )


def access_key_revoke(*, actor: Any, key: AccessKey, reason: str = "") -> AccessKey:
    if key.revoked_at is not None:
        return key
    account = storage_account(key.tenant)
    with _service():
        s3.delete_access_key(user_name=account.iam_user, access_key_id=key.access_key_id)
    with transaction.atomic():
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="storage_access_key.revoke",
            target=key,
            tenant=key.tenant,
            metadata={"access_key_id": key.access_key_id, **({"reason": reason} if reason else {})},
        )
    return key


# ---- closed tenants (apps/storage/closing.py) ----------------------------------------------------------


def account_close(*, tenant: Tenant, at: datetime | None = None) -> None:
    """Start the retention clock of a closed tenant's buckets (no call to the service). Idempotent: the
    first close time stays."""
    ObjectStorageAccount.objects.filter(tenant=tenant, closed_at__isnull=True).update(
        closed_at=at or timezone.now()
    )


def access_keys_revoke_all(*, tenant: Tenant, reason: str) -> int:
    """Revoke every active key of the tenant on the service, then in the database (access_key_revoke, one
    key at a time, so a failure midway leaves the rest for a retry). Returns how many were revoked."""
    revoked = 0
    for key in AccessKey.objects.filter(tenant=tenant, revoked_at__isnull=True).select_related("tenant"):
        access_key_revoke(actor=None, key=key, reason=reason)
        revoked += 1
    return revoked


def buckets_past_retention(*, now: datetime) -> Any:
    """Live buckets of tenants closed more than OBJECT_STORAGE_CLOSED_RETENTION_DAYS ago."""
    cutoff = now - timedelta(days=settings.OBJECT_STORAGE_CLOSED_RETENTION_DAYS)
    closed = ObjectStorageAccount.objects.filter(closed_at__lte=cutoff).values("tenant_id")
    return Bucket.objects.filter(deleted_at__isnull=True, tenant_id__in=closed).select_related("tenant")
