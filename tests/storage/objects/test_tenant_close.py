"""Closing a tenant closes its storage (apps/storage/closing.py), against the real SeaweedFS: its access keys
are refused by the service, its volumes are deleted and stop accruing ledger rows, its buckets are no longer
sampled or billed and are deleted once the retention has passed. The hourly sweep finishes a close that
did not complete (a tenant closed before this existed, or while the service was down)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from celery.exceptions import Retry
from django.test import TestCase
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.storage import closing
from apps.storage.models import Volume, VolumeEvent
from apps.storage.objects import s3, usage
from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount
from apps.storage.objects.services import StorageUnavailable
from apps.tenants import services as tenant_services
from apps.tenants.models import Tenant, TenantStatus
from tests.conftest import Actor
from tests.instances.helpers import Catalog
from tests.storage.volume_helpers import VolumeApi

pytestmark = pytest.mark.usefixtures("object_storage")

REFUSED = {"InvalidAccessKeyId", "AccessDenied"}


def make_bucket(actor: Actor, name: str = "datasets") -> Bucket:
    response = actor.token_client().post(actor.url("/buckets"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Bucket.objects.get(pk=response.json()["id"])


def make_key(actor: Actor, name: str = "training") -> dict[str, Any]:
    response = actor.token_client().post(actor.url("/access-keys"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def close(tenant: Tenant) -> None:
    """As staff do it: the close commits, then its on-commit work runs (the storage task, eagerly here)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        tenant_services.tenant_close(actor=None, tenant=tenant, reason="Customer asked")


def volume_rows(volume_id: Any) -> list[UsageRecord]:
    return list(UsageRecord.objects.filter(resource_type="volume", resource_id=str(volume_id)))


def test_closing_a_tenant_revokes_its_keys_deletes_its_volumes_and_stops_its_storage_bills(
    catalog: Catalog,
    owner: Actor,
    make_actor: Callable[..., Actor],
    client_for: Callable[..., Any],
    admin_s3: Any,
) -> None:
    bucket = make_bucket(owner)
    key, second = make_key(owner, "one"), make_key(owner, "two")
    mine = client_for(key["access_key_id"], key["secret_access_key"])
    mine.put_object(Bucket=bucket.physical_name, Key="ckpt.pt", Body=b"x" * 2048)
    assert mine.list_objects_v2(Bucket=bucket.physical_name)["KeyCount"] == 1
    api = VolumeApi(owner)
    detached = api.create(name="detached", size_gib=10)
    attached = api.create(name="attached", size_gib=20)
    instance = api.launch((attached["id"], "/data")).json()
    assert api.post(f"/instances/{instance['id']}/stop").status_code == 202
    created = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    VolumeEvent.objects.filter(name="created").update(created_at=created)
    # Another tenant's storage is untouched by the close.
    other = make_actor()
    other_bucket = make_bucket(other)
    other_key = make_key(other)
    admin_s3.put_object(Bucket=other_bucket.physical_name, Key="a", Body=b"a")

    close(owner.tenant)
    closed_at = timezone.now()

    # Both keys are refused by the service itself, and revoked in the database with the reason.
    for k in (key, second):
        s3_client = client_for(k["access_key_id"], k["secret_access_key"])
        assert refusal(lambda c=s3_client: c.list_objects_v2(Bucket=bucket.physical_name)) in REFUSED
        assert (
            refusal(lambda c=s3_client: c.get_object(Bucket=bucket.physical_name, Key="ckpt.pt")) in REFUSED
        )
    assert not AccessKey.objects.filter(tenant=owner.tenant, revoked_at__isnull=True).exists()
    revocations = AuditEvent.objects.filter(tenant=owner.tenant, action="storage_access_key.revoke")
    assert sorted(e.metadata["reason"] for e in revocations) == ["tenant closed", "tenant closed"]
    theirs = client_for(other_key["access_key_id"], other_key["secret_access_key"])
    assert theirs.list_objects_v2(Bucket=other_bucket.physical_name)["KeyCount"] == 1

    # Every volume, attached to the stopped instance or not, is being deleted (here, in a region without a
    # cluster, deleted at once), with the reason on its timeline.
    for volume_id in (detached["id"], attached["id"]):
        assert Volume.objects.get(pk=volume_id).state == "deleted"
        asked = VolumeEvent.objects.get(volume_id=volume_id, name="delete_requested")
        assert asked.message == "tenant closed"

    # The volumes' bills end at the close: metering later, however much later, adds nothing past it.
    metering.meter_all(now=closed_at + timedelta(minutes=5))
    rows = {v: volume_rows(v) for v in (detached["id"], attached["id"])}
    assert all(rows.values())
    assert all(r.period.upper <= closed_at for v in rows for r in rows[v])
    metering.meter_all(now=closed_at + timedelta(days=3))
    assert {v: len(volume_rows(v)) for v in rows} == {v: len(rows[v]) for v in rows}

    # Bucket sampling neither bills nor measures the closed tenant's bucket; the other tenant's still is.
    later = closed_at + timedelta(minutes=30)
    assert usage.sample_buckets(now=later) == 1
    assert not UsageRecord.objects.filter(resource_type="bucket", resource_id=str(bucket.pk)).exists()
    assert UsageRecord.objects.filter(resource_type="bucket", resource_id=str(other_bucket.pk)).count() == 1
    bucket.refresh_from_db()
    assert bucket.usage_sampled_at is None

    # The bucket and its data are kept for the retention period (staff can still reach them).
    assert bucket.deleted_at is None
    assert admin_s3.get_object(Bucket=bucket.physical_name, Key="ckpt.pt")["Body"].read() == b"x" * 2048
    assert ObjectStorageAccount.objects.get(tenant=owner.tenant).closed_at is not None


def test_the_sweep_finishes_a_close_that_did_not_and_deletes_buckets_after_the_retention(
    catalog: Catalog, owner: Actor, client_for: Callable[..., Any], admin_s3: Any, settings: Any
) -> None:
    settings.OBJECT_STORAGE_CLOSED_RETENTION_DAYS = 30
    bucket = make_bucket(owner)
    key = make_key(owner)
    mine = client_for(key["access_key_id"], key["secret_access_key"])
    mine.put_object(Bucket=bucket.physical_name, Key="a", Body=b"a")
    volume = VolumeApi(owner).create()
    # Closed without its storage (as tenants were before tenant_close closed it): the key still works...
    Tenant.objects.filter(pk=owner.tenant.pk).update(status=TenantStatus.CLOSED)
    assert mine.list_objects_v2(Bucket=bucket.physical_name)["KeyCount"] == 1
    # ...but neither its bucket nor its volume is billed meanwhile (the backstops).
    now = timezone.now()
    assert usage.sample_buckets(now=now + timedelta(minutes=30)) == 0
    assert metering.meter_all(now=now + timedelta(hours=1)) == 0

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert closing.sweep_closed_tenants(now=now) == {"closes_finished": 1, "buckets_deleted": 0}
    assert refusal(lambda: mine.list_objects_v2(Bucket=bucket.physical_name)) in REFUSED
    assert Volume.objects.get(pk=volume["id"]).state == "deleted"
    closed_at = ObjectStorageAccount.objects.get(tenant=owner.tenant).closed_at
    assert closed_at is not None
    assert closing.unfinished_closes() == []

    # Within the retention the data stays; after it, the bucket goes with its objects.
    assert closing.sweep_closed_tenants(now=closed_at + timedelta(days=29)) == {
        "closes_finished": 0,
        "buckets_deleted": 0,
    }
    assert s3.bucket_exists(bucket.physical_name)
    assert closing.sweep_closed_tenants(now=closed_at + timedelta(days=30, minutes=1)) == {
        "closes_finished": 0,
        "buckets_deleted": 1,
    }
    assert not s3.bucket_exists(bucket.physical_name)
    bucket.refresh_from_db()
    assert bucket.deleted_at is not None
    event = AuditEvent.objects.get(tenant=owner.tenant, action="bucket.delete")
    assert event.metadata["force"] is True and event.metadata["deleted_objects"] == 1
    assert event.metadata["reason"] == "retention after the tenant was closed"


def test_a_close_while_the_service_is_down_is_retried_and_finished_by_the_sweep(
    owner: Actor, object_storage: dict[str, Any], client_for: Callable[..., Any], settings: Any
) -> None:
    bucket = make_bucket(owner)
    key = make_key(owner)
    mine = client_for(key["access_key_id"], key["secret_access_key"])
    # Nothing listens on port 9 of 127.0.0.1 (discard): every call is refused at once, as when the service
    # is down.
    settings.OBJECT_STORAGE = {**object_storage, "ENDPOINT_URL": "http://127.0.0.1:9", "IAM_ENDPOINT_URL": ""}
    with pytest.raises(Retry) as retried:  # the task is retried (in the eager test worker: raised)
        close(owner.tenant)
    assert isinstance(retried.value.exc, StorageUnavailable)
    assert Tenant.objects.get(pk=owner.tenant.pk).status == TenantStatus.CLOSED  # the close itself committed
    assert AccessKey.objects.get(pk=key["id"]).revoked_at is None
    assert closing.sweep_closed_tenants() == {"closes_finished": 0, "buckets_deleted": 0}

    settings.OBJECT_STORAGE = object_storage  # the service is back
    assert closing.sweep_closed_tenants()["closes_finished"] == 1
    assert AccessKey.objects.get(pk=key["id"]).revoked_at is not None
    assert refusal(lambda: mine.list_objects_v2(Bucket=bucket.physical_name)) in REFUSED


def test_closing_deletes_the_presign_key_so_presigned_urls_stop_working(owner: Actor) -> None:
    bucket = make_bucket(owner)
    put = owner.token_client().post(
        owner.url(f"/buckets/{bucket.name}/presign"),
        {"method": "put", "key": "a", "content_length": 1},
        format="json",
    )
    assert put.status_code == 200, put.content
    account = ObjectStorageAccount.objects.get(tenant=owner.tenant)
    presign_key = account.presign_access_key_id
    assert s3.list_access_keys(account.presign_user) == [presign_key]

    close(owner.tenant)

    assert s3.list_access_keys(account.presign_user) == []
    account.refresh_from_db()
    assert (account.presign_access_key_id, account.presign_secret_encrypted) == ("", "")
    request = urllib.request.Request(put.json()["url"], data=b"x", method="PUT")  # noqa: S310 (local server)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 403
    assert closing.unfinished_closes() == []
