"""Object storage pages against the real SeaweedFS on 127.0.0.1 (the fixtures of tests/storage/objects):
buckets listed with their last usage sample, created with the API's name errors on the field, presigned URLs
that really upload and download, deletion that refuses a non-empty bucket unless "delete all objects too";
access keys created with the secret shown once (and working), revoked with confirmation. Object storage that
is not configured or does not answer is a clear message, never a 500. Viewers read only; other tenants'
buckets and keys are 404."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.storage.objects import s3
from apps.storage.objects.models import AccessKey, Bucket
from apps.storage.objects.services import storage_account
from apps.tenants.roles import Role
from tests.console.helpers import client_for, page
from tests.console.html_tree import parse
from tests.factories import TenantFactory
from tests.storage.objects import conftest as s3_fixtures
from tests.storage.objects.helpers import access_key_row, bucket_row

pytestmark = pytest.mark.django_db

# The real server's fixtures: settings pointed at it with a test prefix; what a test made is removed after it.
s3_server = s3_fixtures.s3_server
object_storage = s3_fixtures.object_storage


@pytest.fixture
def owner(make_actor: Callable[..., Any]) -> Any:
    return make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))


def _create_bucket(client: Any, owner: Any, name: str = "datasets") -> Bucket:
    response = client.post(page("buckets", owner.tenant), {"name": name})
    assert response.status_code == 302, response.content.decode()[:2000]
    return Bucket.objects.get(tenant=owner.tenant, name=name, deleted_at__isnull=True)


def _presign(client: Any, owner: Any, bucket: Bucket, method: str, key: str, size: str = "") -> str:
    form = {"method": method, "key": key, "expires_in": "600", "content_length": size}
    response = client.post(page("bucket_detail", owner.tenant, bucket.name), form)
    assert response.status_code == 200, response.content.decode()[:2000]
    assert response["Cache-Control"] == "no-store"
    return parse(response.content.decode()).by_id("presigned-url").text


def _http(method: str, url: str, data: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the local test server
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return bytes(response.read())


# --- the list ------------------------------------------------------------------------------------------


def test_the_list_shows_each_bucket_with_its_last_sample(owner: Any) -> None:
    sampled_at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    bucket_row(
        owner.tenant,
        name="datasets",
        created_by=owner.user,
        size_bytes=5 * 1024 * 1024,
        object_count=3,
        usage_sampled_at=sampled_at,
    )
    bucket_row(owner.tenant, name="fresh")

    response = client_for(owner.user).get(page("buckets", owner.tenant))

    assert response.status_code == 200
    root = parse(response.content.decode())
    rows = {row.attrs["data-bucket"]: row.text for row in root.walk() if "data-bucket" in row.attrs}
    physical = Bucket.objects.get(name="datasets").physical_name
    assert physical.startswith(owner.tenant.object_storage.prefix)
    for expected in ("datasets", physical, "5.0 MB", " 3 ", "2026-11-20 09:30", owner.user.email):
        assert expected in f" {rows['datasets']} ", expected
    assert "0 bytes" in rows["fresh"] and "Not yet" in rows["fresh"]
    assert page("bucket_detail", owner.tenant, "datasets") in response.content.decode()


# --- buckets on the real service ------------------------------------------------------------------------


def test_creating_presigning_and_deleting_a_bucket(owner: Any, object_storage: dict[str, Any]) -> None:
    client = client_for(owner.user)

    bucket = _create_bucket(client, owner, "datasets")
    assert s3.bucket_exists(bucket.physical_name)
    assert AuditEvent.objects.get(action="bucket.create", tenant=owner.tenant).via == "console"
    detail = client.get(page("bucket_detail", owner.tenant, "datasets")).content.decode()
    assert f"Created the bucket datasets ({bucket.physical_name})." in detail

    # A presigned PUT uploads without credentials; a presigned GET reads it back.
    _http("PUT", _presign(client, owner, bucket, "put", "train/part-0001.txt", "10"), b"hello gpus")
    assert _http("GET", _presign(client, owner, bucket, "get", "train/part-0001.txt")) == b"hello gpus"

    # Not empty: refused on the confirmation page, with the way out.
    url = page("bucket_delete", owner.tenant, "datasets")
    confirm = parse(client.get(url).content.decode())
    box = next(n for n in confirm.walk() if n.tag == "input" and n.attrs.get("name") == "force")
    assert "checked" not in box.attrs and "Delete all objects too" in box.parent.text
    refused = client.post(url)
    assert refused.status_code == 409
    assert "is not empty" in parse(refused.content.decode()).by_id("form-error").text
    assert s3.bucket_exists(bucket.physical_name)
    assert Bucket.objects.get(pk=bucket.pk).deleted_at is None

    deleted = client.post(url, {"force": "on"})
    assert deleted.status_code == 302 and deleted.url == page("buckets", owner.tenant)
    assert Bucket.objects.get(pk=bucket.pk).deleted_at is not None
    assert not s3.bucket_exists(bucket.physical_name)
    assert "Deleted the bucket datasets." in client.get(deleted.url).content.decode()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ab", "Must be 3 to 40 characters long."),
        ("Data_Sets", "Use lowercase letters, digits and hyphens"),
        ("data--sets", "Must not contain two hyphens in a row."),
        ("", "This field may not be blank."),
    ],
)
def test_a_bad_bucket_name_is_refused_on_the_field(owner: Any, name: str, message: str) -> None:
    response = client_for(owner.user).post(page("buckets", owner.tenant), {"name": name})

    assert response.status_code == 400
    html = response.content.decode()
    assert message in parse(html).by_id("bucket-name-error").text
    assert parse(html).by_id("bucket-name").attrs["aria-invalid"] == "true"
    assert not Bucket.objects.exists()


def test_a_taken_bucket_name_is_refused_on_the_field(owner: Any, object_storage: dict[str, Any]) -> None:
    client = client_for(owner.user)
    _create_bucket(client, owner, "datasets")

    response = client.post(page("buckets", owner.tenant), {"name": "datasets"})

    assert response.status_code == 409
    html = response.content.decode()
    assert "A bucket named datasets already exists." in parse(html).by_id("form-error").text
    assert "Taken." in parse(html).by_id("bucket-name-error").text


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"method": "post"}, "method"),
        ({"key": ""}, "key"),
        ({"expires_in": "0"}, "expires_in"),
        ({"method": "put"}, "content_length"),
        ({"method": "put", "content_length": "-1"}, "content_length"),
    ],
)
def test_bad_presign_input_is_refused_on_its_field(owner: Any, form: dict[str, str], field: str) -> None:
    bucket = bucket_row(owner.tenant, name="datasets")
    data = {"method": "get", "key": "a.txt", "expires_in": "60", **form}

    response = client_for(owner.user).post(page("bucket_detail", owner.tenant, bucket.name), data)

    assert response.status_code == 400
    assert field in response.context["field_errors"]
    assert 'aria-invalid="true"' in response.content.decode()
    assert 'id="presigned-url"' not in response.content.decode()


# --- access keys ---------------------------------------------------------------------------------------


def test_an_access_key_secret_is_shown_once_and_works(owner: Any, object_storage: dict[str, Any]) -> None:
    client = client_for(owner.user)
    bucket = _create_bucket(client, owner, "datasets")

    response = client.post(page("access_keys", owner.tenant), {"name": "training"})

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    root = parse(response.content.decode())
    key = AccessKey.objects.get(tenant=owner.tenant)
    secret = root.by_id("secret-access-key").text
    assert root.by_id("access-key-id").text == key.access_key_id and len(secret) >= 20
    assert response.content.decode().count(secret) == 1
    example = root.by_id("aws-example").text
    endpoint, region = object_storage["ENDPOINT_URL"], object_storage["REGION"]
    assert f"aws --endpoint-url {endpoint} --region {region} s3 ls s3://{bucket.physical_name}/" in example
    assert endpoint in root.text and region in root.text

    # The secret is real: the tenant's own program lists its bucket with it.
    tenant_s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    assert tenant_s3.list_objects_v2(Bucket=bucket.physical_name).get("KeyCount") == 0

    # Never again: the list shows the key, not its secret.
    listing = client.get(page("access_keys", owner.tenant)).content.decode()
    assert key.access_key_id in listing and secret not in listing

    # Revoke asks first, then the key is gone from the service.
    url = page("access_key_revoke", owner.tenant, key.pk)
    assert "Yes, revoke training" in client.get(url).content.decode()
    revoked = client.post(url)
    assert revoked.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert key.access_key_id not in s3.list_access_keys(owner.tenant.object_storage.iam_user)
    row = next(
        n for n in parse(client.get(revoked.url).content.decode()).walk() if n.attrs.get("data-access-key")
    )
    assert (
        "training" in row.text
        and " No " in f" {row.text} "
        and key.revoked_at.strftime("%Y-%m-%d") in row.text
    )
    assert "Revoke" not in row.text


def test_an_access_key_needs_a_name(owner: Any) -> None:
    response = client_for(owner.user).post(page("access_keys", owner.tenant), {"name": ""})
    assert response.status_code == 400
    assert (
        "This field may not be blank." in parse(response.content.decode()).by_id("access-key-name-error").text
    )
    assert not AccessKey.objects.exists()


# --- when the service is missing ------------------------------------------------------------------------


def test_object_storage_not_configured_is_a_clear_message(owner: Any, settings: Any) -> None:
    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "ENDPOINT_URL": "", "ACCESS_KEY_ID": ""}
    bucket = bucket_row(owner.tenant, name="datasets")
    client = client_for(owner.user)

    for name, args in (("buckets", []), ("access_keys", []), ("bucket_detail", [bucket.name])):
        response = client.get(page(name, owner.tenant, *args))
        assert response.status_code == 200, name
        assert "Object storage is not configured on this installation." in response.content.decode()

    for name, data in (("buckets", {"name": "models"}), ("access_keys", {"name": "ci"})):
        response = client.post(page(name, owner.tenant), data)
        assert response.status_code == 503, name
        error = parse(response.content.decode()).by_id("form-error").text
        assert "Object storage is not configured on this installation." in error
    presign = client.post(page("bucket_detail", owner.tenant, bucket.name), {"method": "get", "key": "a"})
    assert presign.status_code == 503
    assert not Bucket.objects.filter(name="models").exists() and not AccessKey.objects.exists()


def test_an_unreachable_service_is_a_clear_message(
    owner: Any, object_storage: dict[str, Any], settings: Any
) -> None:
    # Nothing listens on port 1: every call is refused at once.
    settings.OBJECT_STORAGE = {**object_storage, "ENDPOINT_URL": "http://127.0.0.1:1", "IAM_ENDPOINT_URL": ""}
    client = client_for(owner.user)

    response = client.post(page("buckets", owner.tenant), {"name": "datasets"})

    assert response.status_code == 503
    error = parse(response.content.decode()).by_id("form-error").text
    assert "The object storage service is unavailable; try again later." in error
    assert not Bucket.objects.exists()  # the row rolled back with the failed call
    keys = client.post(page("access_keys", owner.tenant), {"name": "ci"})
    assert keys.status_code == 503 and not AccessKey.objects.exists()


# --- who may do what ------------------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_change(make_actor: Callable[..., Any], owner: Any) -> None:
    bucket = bucket_row(owner.tenant, name="datasets")
    key = access_key_row(owner.tenant, name="training")
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = client_for(viewer.user)

    listing = client.get(page("buckets", owner.tenant)).content.decode()
    assert "datasets" in listing and 'id="bucket-name"' not in listing
    detail = client.get(page("bucket_detail", owner.tenant, bucket.name)).content.decode()
    assert bucket.physical_name in detail and 'id="presign-key"' not in detail
    assert page("bucket_delete", owner.tenant, bucket.name) not in detail
    keys = client.get(page("access_keys", owner.tenant)).content.decode()
    assert key.access_key_id in keys and 'id="access-key-name"' not in keys
    assert page("access_key_revoke", owner.tenant, key.pk) not in keys

    for url, data in [
        (page("buckets", owner.tenant), {"name": "models"}),
        (page("bucket_detail", owner.tenant, bucket.name), {"method": "get", "key": "a"}),
        (page("bucket_delete", owner.tenant, bucket.name), {"force": "on"}),
        (page("access_keys", owner.tenant), {"name": "ci"}),
        (page("access_key_revoke", owner.tenant, key.pk), {}),
    ]:
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "storage.write" in response.content.decode()
    assert Bucket.objects.get(pk=bucket.pk).deleted_at is None
    assert AccessKey.objects.get(pk=key.pk).revoked_at is None
    assert Bucket.objects.count() == 1 and AccessKey.objects.count() == 1


def test_another_tenants_buckets_and_keys_are_404(make_actor: Callable[..., Any], owner: Any) -> None:
    bucket = bucket_row(owner.tenant, name="secret-bucket")
    key = access_key_row(owner.tenant, name="secret-key")
    stranger = make_actor(Role.OWNER)
    bucket_row(stranger.tenant, name="theirs")
    client = client_for(stranger.user)

    urls = [page("buckets", owner.tenant), page("access_keys", owner.tenant)]
    for tenant in (owner.tenant, stranger.tenant):
        urls += [
            page("bucket_detail", tenant, bucket.name if tenant == owner.tenant else "secret-bucket"),
            page("bucket_delete", tenant, "secret-bucket"),
            page("access_key_revoke", tenant, key.pk),
        ]
    for url in urls:
        for method in (client.get, client.post):
            response = method(url, {"force": "on", "method": "get", "key": "a", "name": "x"})
            assert response.status_code == 404, url
            html = response.content.decode()
            assert "secret-bucket" not in html and "Acme Research" not in html
    assert Bucket.objects.get(pk=bucket.pk).deleted_at is None
    assert AccessKey.objects.get(pk=key.pk).revoked_at is None
    # The stranger's own "theirs" bucket is its page; the owner's bucket name under its tenant is not.
    assert client.get(page("bucket_detail", stranger.tenant, "theirs")).status_code == 200


# --- suspended keys and blocked writes ------------------------------------------------------------------


def test_suspended_keys_and_blocked_writes_are_said_on_the_pages(owner: Any) -> None:
    bucket_row(owner.tenant, name="datasets")
    access_key_row(owner.tenant, name="training", suspended_at=timezone.now())
    account = storage_account(owner.tenant)
    client = client_for(owner.user)
    assert 'id="storage-access"' not in client.get(page("buckets", owner.tenant)).content.decode()

    account.writes_blocked_at = timezone.now()
    account.save()
    listing = parse(client.get(page("buckets", owner.tenant)).content.decode())
    assert "nothing new can be written" in listing.by_id("storage-access").text

    account.keys_suspended_at, account.keys_suspended_reason = timezone.now(), "insufficient funds"
    account.save()
    keys = client.get(page("access_keys", owner.tenant)).content.decode()
    assert "suspended (insufficient funds)" in parse(keys).by_id("storage-access").text
    assert "<td>Suspended</td>" in keys
