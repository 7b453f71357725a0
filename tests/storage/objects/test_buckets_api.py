"""Buckets through the API against the real SeaweedFS of scripts/s3.sh (no mocks)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.storage.objects import s3
from apps.storage.objects.models import Bucket
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.tenants.support import assert_error

pytestmark = pytest.mark.usefixtures("object_storage")


def create(actor: Actor, name: str, **headers: str) -> Any:
    return actor.token_client().post(actor.url("/buckets"), {"name": name}, format="json", **headers)


def test_create_list_show_and_delete(owner: Actor, admin_s3: Any) -> None:
    response = create(owner, "datasets")
    assert response.status_code == 201, response.content
    body = response.json()
    physical = body["physical_name"]
    assert body["name"] == "datasets"
    assert physical.startswith("test-") and physical.endswith("-datasets")
    assert s3.bucket_exists(physical)
    assert AuditEvent.objects.filter(tenant=owner.tenant, action="bucket.create").count() == 1

    listed = owner.token_client().get(owner.url("/buckets")).json()
    assert [(b["name"], b["size_bytes"], b["object_count"]) for b in listed["results"]] == [
        ("datasets", 0, 0)
    ]
    shown = owner.token_client().get(owner.url("/buckets/datasets"))
    assert shown.status_code == 200 and shown.json()["physical_name"] == physical

    assert owner.token_client().delete(owner.url("/buckets/datasets")).status_code == 204
    assert not s3.bucket_exists(physical)
    assert owner.token_client().get(owner.url("/buckets")).json()["results"] == []
    assert_error(owner.token_client().get(owner.url("/buckets/datasets")), 404, "not_found")
    # The name is free again.
    assert create(owner, "datasets").status_code == 201


def test_two_tenants_both_have_datasets_and_see_only_their_own(make_actor: Callable[..., Actor]) -> None:
    a, b = make_actor(), make_actor()
    first, second = create(a, "datasets").json(), create(b, "datasets").json()
    assert first["physical_name"] != second["physical_name"]
    assert s3.bucket_exists(first["physical_name"]) and s3.bucket_exists(second["physical_name"])
    assert [x["id"] for x in a.token_client().get(a.url("/buckets")).json()["results"]] == [first["id"]]
    # b's bucket through a's tenant: indistinguishable from a missing one.
    create(b, "private")
    assert_error(a.token_client().get(a.url("/buckets/private")), 404, "not_found")
    assert_error(a.token_client().delete(a.url("/buckets/private?force=true")), 404, "not_found")
    assert Bucket.objects.filter(tenant=b.tenant, name="private", deleted_at__isnull=True).exists()


def test_a_taken_name_answers_409_and_an_invalid_name_names_the_field(owner: Actor) -> None:
    assert create(owner, "datasets").status_code == 201
    assert_error(create(owner, "datasets"), 409, "bucket_exists")
    for bad in ["ab", "Datasets", "-data", "data-", "da--ta", "a" * 41, "data.sets"]:
        error = assert_error(create(owner, bad), 400, "invalid")
        assert "name" in error["fields"], bad
    assert Bucket.objects.filter(tenant=owner.tenant).count() == 1


def test_idempotent_create_replays_without_a_second_bucket(owner: Actor) -> None:
    first = create(owner, "checkpoints", HTTP_IDEMPOTENCY_KEY="k-1")
    again = create(owner, "checkpoints", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert Bucket.objects.filter(tenant=owner.tenant, name="checkpoints").count() == 1


def test_delete_refuses_a_bucket_with_objects_unless_forced(owner: Actor, admin_s3: Any) -> None:
    physical = create(owner, "datasets").json()["physical_name"]
    for i in range(3):
        admin_s3.put_object(Bucket=physical, Key=f"shard-{i}", Body=b"x" * 10)

    assert_error(owner.token_client().delete(owner.url("/buckets/datasets")), 409, "bucket_not_empty")
    assert s3.bucket_exists(physical)
    assert_error(owner.token_client().delete(owner.url("/buckets/datasets?force=maybe")), 400, "invalid")

    assert owner.token_client().delete(owner.url("/buckets/datasets?force=true")).status_code == 204
    assert not s3.bucket_exists(physical)
    event = AuditEvent.objects.get(tenant=owner.tenant, action="bucket.delete")
    assert event.metadata["force"] is True and event.metadata["deleted_objects"] == 3


def test_presigned_put_then_get_with_plain_http(owner: Actor) -> None:
    create(owner, "uploads")
    url = owner.url("/buckets/uploads/presign")
    put = owner.token_client().post(
        url,
        {"method": "put", "key": "dir/hello.txt", "expires_in": 600, "content_length": 13},
        format="json",
    )
    assert put.status_code == 200, put.content
    assert put.json()["method"] == "PUT"
    request = urllib.request.Request(put.json()["url"], data=b"hello, bucket", method="PUT")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (the local server)
        assert response.status == 200

    get = owner.token_client().post(url, {"method": "get", "key": "dir/hello.txt"}, format="json").json()
    with urllib.request.urlopen(get["url"], timeout=10) as response:  # noqa: S310
        assert response.read() == b"hello, bucket"
    # The URL is for that object only: another key with its signature is refused.
    tampered = get["url"].replace("hello.txt", "other.txt")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)  # noqa: S310
    assert refused.value.code == 403


def test_presign_validates_its_body(owner: Actor) -> None:
    create(owner, "uploads")
    url = owner.url("/buckets/uploads/presign")
    for body, field in [
        ({"method": "delete", "key": "a"}, "method"),
        ({"method": "get", "key": ""}, "key"),
        ({"method": "get", "key": "a", "expires_in": 7 * 24 * 3600 + 1}, "expires_in"),
        ({"method": "get", "key": "a\x00b"}, "key"),
    ]:
        error = assert_error(owner.token_client().post(url, body, format="json"), 400, "invalid")
        assert field in error["fields"], body


def test_viewers_read_and_members_write(make_actor: Callable[..., Actor], owner: Actor) -> None:
    create(owner, "datasets")
    viewer = make_actor(role=Role.VIEWER, tenant=owner.tenant)
    assert viewer.token_client().get(viewer.url("/buckets")).status_code == 200
    assert_error(create(viewer, "mine"), 403)
    assert_error(viewer.token_client().delete(viewer.url("/buckets/datasets")), 403)
    member = make_actor(role=Role.MEMBER, tenant=owner.tenant)
    assert create(member, "mine").status_code == 201


def test_bucket_limit(owner: Actor, settings: Any) -> None:
    settings.OBJECT_STORAGE_MAX_BUCKETS_PER_TENANT = 1
    assert create(owner, "one").status_code == 201
    response = create(owner, "two")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert response.json()["error"]["details"] == {
        "resource": "buckets",
        "limit": 1,
        "used": 1,
        "requested": 1,
    }


def test_an_unreachable_service_answers_503_and_leaves_no_row(owner: Actor, settings: Any) -> None:
    # A closed port on 127.0.0.1: the S3 call fails inside the transaction, which rolls the row back.
    settings.OBJECT_STORAGE = {
        **settings.OBJECT_STORAGE,
        "ENDPOINT_URL": "http://127.0.0.1:9",
        "TIMEOUT_SECONDS": 1,
    }
    assert_error(create(owner, "datasets"), 503, "object_storage_unavailable")
    assert not Bucket.objects.filter(tenant=owner.tenant).exists()
    assert not AuditEvent.objects.filter(tenant=owner.tenant, action="bucket.create").exists()


def test_not_configured_answers_503(owner: Actor, settings: Any) -> None:
    settings.OBJECT_STORAGE = {**settings.OBJECT_STORAGE, "ENDPOINT_URL": ""}
    assert_error(create(owner, "datasets"), 503, "object_storage_not_configured")
    assert not Bucket.objects.exists()
