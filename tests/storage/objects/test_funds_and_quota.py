"""Object storage needs funds and keeps to a byte quota, against the real SeaweedFS (apps/storage/objects/
access.py, docs/storage.md "Funds, suspension and the byte quota"):

- creating a bucket, a key or an upload URL without funds answers 402, and nothing is made;
- presigned URLs are signed with the tenant's own presign key (never the admin identity), which reaches only
  the tenant's buckets; an upload URL names its size and accepts exactly that many bytes;
- when the money runs out, or the tenant is suspended, every key is set Inactive on the service: requests
  signed with it are refused, its data is kept; a payment (or reactivation) makes the same keys work again;
- at or past the byte quota (as sampled), the tenant's policy loses s3:PutObject: reads, lists and deletes
  still work, writes do not, until the tenant is back under.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.test import TestCase
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import services as billing_services
from apps.quotas.services import quota_for
from apps.storage.objects import access, s3, usage
from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount
from apps.tenants import services as tenant_services
from tests.billing.wallet_helpers import usage as ledger_usage
from tests.conftest import Actor
from tests.factories import TenantFactory

pytestmark = pytest.mark.usefixtures("object_storage")

REFUSED = {"InvalidAccessKeyId", "AccessDenied"}


@contextmanager
def committed() -> Iterator[None]:
    """Run what the code queues on commit (signals, then the task, eagerly here), as a real commit would."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        yield


def make_bucket(actor: Actor, name: str = "datasets") -> Bucket:
    response = actor.token_client().post(actor.url("/buckets"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Bucket.objects.get(pk=response.json()["id"])


def make_key(actor: Actor, name: str = "training") -> dict[str, Any]:
    response = actor.token_client().post(actor.url("/access-keys"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def presign(actor: Actor, bucket: Bucket, **body: Any) -> Any:
    return actor.token_client().post(actor.url(f"/buckets/{bucket.name}/presign"), body, format="json")


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The API's error body (details included) with `status` (and `code`)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    error = dict(response.json()["error"])
    assert code is None or error["code"] == code, error
    return error


def refusal(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def send(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (the local server)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def set_byte_quota(actor: Actor, gib: int) -> None:
    quota = quota_for(actor.tenant)
    quota.max_object_storage_gib = gib
    quota.save()


def drain(actor: Actor) -> None:
    """Spend the tenant's whole credit (1000.00 from the factory) and then some: a ledger row of 1500."""
    ledger_usage(actor.tenant, "1500.00", end=timezone.now() - timedelta(minutes=5))


# --- funds to create --------------------------------------------------------------------------------------


def test_without_funds_no_bucket_key_or_upload_url_is_made(make_actor: Callable[..., Actor]) -> None:
    broke = make_actor(tenant=TenantFactory(credit=0))
    for path, body in [("/buckets", {"name": "datasets"}), ("/access-keys", {"name": "training"})]:
        error = assert_error(broke.token_client().post(broke.url(path), body, format="json"), 402)
        assert error["code"] == "insufficient_funds" and error["details"]["balance"] == "0"
    assert not Bucket.objects.filter(tenant=broke.tenant).exists()
    assert not AccessKey.objects.filter(tenant=broke.tenant).exists()
    account = ObjectStorageAccount.objects.filter(tenant=broke.tenant).first()
    assert account is None or s3.list_access_keys(account.iam_user) == []

    funded = make_actor()
    bucket = make_bucket(funded, "uploads")
    drain(funded)
    assert_error(
        presign(funded, bucket, method="put", key="a.bin", content_length=3), 402, "insufficient_funds"
    )


# --- presigned URLs: the tenant's own key, a signed size ---------------------------------------------------


def test_presigned_urls_are_signed_with_the_tenants_presign_key_which_reaches_only_its_buckets(
    make_actor: Callable[..., Actor], object_storage: dict[str, Any], client_for: Callable[..., Any]
) -> None:
    a, b = make_actor(), make_actor()
    mine, theirs = make_bucket(a), make_bucket(b)
    response = presign(a, mine, method="get", key="x")
    assert response.status_code == 200, response.content
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.json()["url"]).query)
    signer = query["X-Amz-Credential"][0].split("/")[0]

    account = ObjectStorageAccount.objects.get(tenant=a.tenant)
    assert signer == account.presign_access_key_id != object_storage["ACCESS_KEY_ID"]
    key_id, secret = account.presign_credentials() or ("", "")
    assert secret and secret not in account.presign_secret_encrypted  # encrypted at rest
    # With that key itself (as if it leaked): the tenant's objects only, and no listing at all.
    presign_client = client_for(key_id, secret)
    presign_client.put_object(Bucket=mine.physical_name, Key="own", Body=b"ok")
    assert refusal(lambda: presign_client.get_object(Bucket=theirs.physical_name, Key="x")) == "AccessDenied"
    assert refusal(lambda: presign_client.put_object(Bucket=theirs.physical_name, Key="x", Body=b"x")) == (
        "AccessDenied"
    )
    assert refusal(lambda: presign_client.list_objects_v2(Bucket=mine.physical_name)) == "AccessDenied"
    assert (
        refusal(lambda: presign_client.delete_object(Bucket=mine.physical_name, Key="own")) == "AccessDenied"
    )
    # A second presign reuses the key: one presign key per tenant.
    presign(a, mine, method="get", key="y")
    assert s3.list_access_keys(account.presign_user) == [account.presign_access_key_id]


def test_an_upload_url_accepts_exactly_its_signed_size(owner: Actor, object_storage: dict[str, Any]) -> None:
    bucket = make_bucket(owner, "uploads")
    assert "content_length" in assert_error(presign(owner, bucket, method="put", key="a.bin"), 400)["fields"]
    error = assert_error(presign(owner, bucket, method="get", key="a.bin", content_length=5), 400)
    assert "content_length" in error["fields"]
    too_big = presign(owner, bucket, method="put", key="a.bin", content_length=5 * 1024**3 + 1)
    assert "content_length" in assert_error(too_big, 400)["fields"]

    response = presign(owner, bucket, method="put", key="a.bin", content_length=5)
    assert response.status_code == 200 and response.json()["content_length"] == 5
    url = response.json()["url"]
    assert send("PUT", url, b"0123456789")[0] == 403  # more than it was signed for
    assert send("PUT", url, b"012")[0] == 403  # less
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("PUT", f"{parts.path}?{parts.query}", body=iter([b"01234", b"56789"]))  # chunked
    assert connection.getresponse().status == 403
    connection.close()
    assert send("PUT", url, b"hello")[0] == 200
    got = presign(owner, bucket, method="get", key="a.bin").json()["url"]
    assert send("GET", got) == (200, b"hello")


def test_an_upload_url_must_fit_in_what_is_left_of_the_byte_quota(owner: Actor) -> None:
    bucket = make_bucket(owner, "uploads")
    set_byte_quota(owner, 1)
    Bucket.objects.filter(pk=bucket.pk).update(size_bytes=1024**3 - 100)  # as the last sample measured

    error = assert_error(presign(owner, bucket, method="put", key="big", content_length=101), 409)
    assert error["code"] == "quota_exceeded"
    assert error["details"]["resource"] == "object_storage_gib"
    assert (error["details"]["limit_bytes"], error["details"]["used_bytes"]) == (1024**3, 1024**3 - 100)
    assert presign(owner, bucket, method="put", key="fits", content_length=100).status_code == 200


# --- keys suspended when the money runs out, restored on payment ---------------------------------------


def test_keys_are_suspended_when_the_money_runs_out_and_work_again_after_a_top_up(
    owner: Actor, client_for: Callable[..., Any], admin_s3: Any
) -> None:
    bucket = make_bucket(owner)
    key = make_key(owner)
    tenant_s3 = client_for(key["access_key_id"], key["secret_access_key"])
    tenant_s3.put_object(Bucket=bucket.physical_name, Key="ckpt.pt", Body=b"weights")
    get_url = presign(owner, bucket, method="get", key="ckpt.pt").json()["url"]
    assert send("GET", get_url) == (200, b"weights")

    drain(owner)
    assert access.enforce_access()["changed"] == 1

    assert (
        refusal(lambda: tenant_s3.put_object(Bucket=bucket.physical_name, Key="more", Body=b"x")) in REFUSED
    )
    assert refusal(lambda: tenant_s3.get_object(Bucket=bucket.physical_name, Key="ckpt.pt")) in REFUSED
    assert send("GET", get_url)[0] == 403  # the presign key is suspended with the others
    assert_error(presign(owner, bucket, method="get", key="ckpt.pt"), 402, "insufficient_funds")
    shown = owner.token_client().get(owner.url(f"/access-keys/{key['id']}")).json()
    assert (shown["active"], shown["suspended"]) == (True, True)
    # The data is kept (the admin identity still reads it), and so is the key (suspended, not deleted).
    assert admin_s3.get_object(Bucket=bucket.physical_name, Key="ckpt.pt")["Body"].read() == b"weights"
    account = ObjectStorageAccount.objects.get(tenant=owner.tenant)
    assert key["access_key_id"] in s3.list_access_keys(account.iam_user)
    event = AuditEvent.objects.get(tenant=owner.tenant, action="object_storage.keys_suspend")
    assert event.metadata["reason"] == access.FUNDS_REASON and event.metadata["keys"] == 1
    assert access.enforce_access()["changed"] == 0  # nothing more to do

    # A top-up that leaves a debt changes nothing; one that covers it restores the same keys at once.
    with committed():
        billing_services.credit_grant_create(
            tenant=owner.tenant, kind="paid", amount="100.00", reason="top-up"
        )
    assert refusal(lambda: tenant_s3.get_object(Bucket=bucket.physical_name, Key="ckpt.pt")) in REFUSED
    with committed():
        billing_services.credit_grant_create(
            tenant=owner.tenant, kind="paid", amount="900.00", reason="top-up"
        )
    assert tenant_s3.get_object(Bucket=bucket.physical_name, Key="ckpt.pt")["Body"].read() == b"weights"
    tenant_s3.put_object(Bucket=bucket.physical_name, Key="more", Body=b"x")
    assert send("GET", get_url) == (200, b"weights")  # the URL made before works again too
    assert owner.token_client().get(owner.url(f"/access-keys/{key['id']}")).json()["suspended"] is False
    assert AuditEvent.objects.filter(tenant=owner.tenant, action="object_storage.keys_restore").count() == 1


def test_a_suspended_tenants_keys_are_refused_until_it_is_reactivated(
    owner: Actor, client_for: Callable[..., Any]
) -> None:
    bucket = make_bucket(owner)
    key = make_key(owner)
    tenant_s3 = client_for(key["access_key_id"], key["secret_access_key"])
    tenant_s3.put_object(Bucket=bucket.physical_name, Key="a", Body=b"a")

    with committed():
        tenant_services.tenant_suspend(actor=None, tenant=owner.tenant, reason="Abuse report")
    assert refusal(lambda: tenant_s3.get_object(Bucket=bucket.physical_name, Key="a")) in REFUSED
    event = AuditEvent.objects.get(tenant=owner.tenant, action="object_storage.keys_suspend")
    assert event.metadata["reason"] == access.SUSPENDED_REASON

    with committed():
        tenant_services.tenant_reactivate(actor=None, tenant=owner.tenant)
    assert tenant_s3.get_object(Bucket=bucket.physical_name, Key="a")["Body"].read() == b"a"


def test_a_key_made_while_the_others_are_suspended_is_suspended_too(
    owner: Actor, client_for: Callable[..., Any]
) -> None:
    bucket = make_bucket(owner)
    make_key(owner, "first")
    drain(owner)
    access.enforce_access()
    # Funds come back (the check has not run yet): a new key must not work while the others do not.
    billing_services.credit_grant_create(tenant=owner.tenant, kind="paid", amount="1000.00", reason="top-up")
    second = make_key(owner, "second")
    assert second["suspended"] is True
    second_s3 = client_for(second["access_key_id"], second["secret_access_key"])
    assert refusal(lambda: second_s3.list_objects_v2(Bucket=bucket.physical_name)) in REFUSED
    access.enforce_access()
    assert second_s3.list_objects_v2(Bucket=bucket.physical_name)["KeyCount"] == 0


# --- the byte quota ---------------------------------------------------------------------------------------


def test_at_the_byte_quota_writes_are_refused_while_reads_and_deletes_work_until_back_under(
    owner: Actor, client_for: Callable[..., Any]
) -> None:
    bucket = make_bucket(owner)
    key = make_key(owner)
    tenant_s3 = client_for(key["access_key_id"], key["secret_access_key"])
    tenant_s3.put_object(Bucket=bucket.physical_name, Key="a", Body=b"a" * 100)
    tenant_s3.put_object(Bucket=bucket.physical_name, Key="b", Body=b"b" * 100)
    set_byte_quota(owner, 0)

    usage.sample_buckets()
    assert access.enforce_access()["changed"] == 1

    assert refusal(lambda: tenant_s3.put_object(Bucket=bucket.physical_name, Key="c", Body=b"c")) == (
        "AccessDenied"
    )
    assert refusal(lambda: tenant_s3.create_multipart_upload(Bucket=bucket.physical_name, Key="m")) == (
        "AccessDenied"
    )
    assert tenant_s3.get_object(Bucket=bucket.physical_name, Key="a")["Body"].read() == b"a" * 100
    assert tenant_s3.list_objects_v2(Bucket=bucket.physical_name)["KeyCount"] == 2
    tenant_s3.delete_object(Bucket=bucket.physical_name, Key="b")
    assert tenant_s3.list_objects_v2(Bucket=bucket.physical_name)["KeyCount"] == 1
    error = assert_error(presign(owner, bucket, method="put", key="c", content_length=1), 409)
    assert error["code"] == "quota_exceeded"
    event = AuditEvent.objects.get(tenant=owner.tenant, action="object_storage.writes_block")
    assert event.metadata == {"stored_bytes": 200, "quota_bytes": 0}
    quotas = {row["resource"]: row for row in owner.token_client().get(owner.url("/quotas")).json()["limits"]}
    assert quotas["object_storage_gib"] == {"resource": "object_storage_gib", "limit": 0, "used": 1}

    # Back under (the quota raised, as staff would): writes work again at the next check.
    set_byte_quota(owner, 1)
    access.enforce_access()
    tenant_s3.put_object(Bucket=bucket.physical_name, Key="c", Body=b"c")
    assert presign(owner, bucket, method="put", key="d", content_length=1).status_code == 200
    assert AuditEvent.objects.filter(tenant=owner.tenant, action="object_storage.writes_unblock").count() == 1


def test_a_presign_key_made_while_writes_are_blocked_cannot_write(
    owner: Actor, client_for: Callable[..., Any]
) -> None:
    bucket = make_bucket(owner)
    make_key(owner)
    set_byte_quota(owner, 0)
    access.enforce_access()
    assert ObjectStorageAccount.objects.get(tenant=owner.tenant).writes_blocked_at is not None

    assert presign(owner, bucket, method="get", key="a").status_code == 200  # makes the presign key
    account = ObjectStorageAccount.objects.get(tenant=owner.tenant)
    presign_s3 = client_for(*(account.presign_credentials() or ("", "")))
    assert refusal(lambda: presign_s3.put_object(Bucket=bucket.physical_name, Key="x", Body=b"x")) == (
        "AccessDenied"
    )
