"""The Django admin cannot add, edit or delete bucket, access key or storage account rows (a deleted row
would leave the bucket or the key on the S3 service, working, unbilled and unaudited); its actions delete
empty buckets and revoke keys through the services, on the real SeaweedFS, audited as the staff user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.test import Client

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.storage.admin_actions import ADMIN_REASON
from apps.storage.objects import s3
from apps.storage.objects.models import AccessKey, Bucket, ObjectStorageAccount
from tests.conftest import Actor, login_staff

pytestmark = pytest.mark.usefixtures("object_storage")


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser(email="staff@example.com", password="x-staff-password-1")


@pytest.fixture
def admin_client(staff: User) -> Client:
    return login_staff(Client(), staff)


def make_bucket(actor: Actor, name: str) -> Bucket:
    response = actor.token_client().post(actor.url("/buckets"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return Bucket.objects.get(pk=response.json()["id"])


def make_key(actor: Actor) -> dict[str, Any]:
    response = actor.token_client().post(actor.url("/access-keys"), {"name": "ci"}, format="json")
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_rows_cannot_be_deleted_or_added_in_the_admin(admin_client: Client, owner: Actor) -> None:
    bucket = make_bucket(owner, "datasets")
    key = make_key(owner)
    account = ObjectStorageAccount.objects.get(tenant=owner.tenant)
    for path in (
        f"/admin/storage_objects/bucket/{bucket.pk}/delete/",
        f"/admin/storage_objects/accesskey/{key['id']}/delete/",
        f"/admin/storage_objects/objectstorageaccount/{account.pk}/delete/",
    ):
        assert admin_client.post(path, {"post": "yes"}).status_code == 403, path
    for path in ("bucket", "accesskey", "objectstorageaccount"):
        assert admin_client.get(f"/admin/storage_objects/{path}/add/").status_code == 403, path
    assert s3.bucket_exists(bucket.physical_name)
    assert key["access_key_id"] in s3.list_access_keys(account.iam_user)
    shown = admin_client.get(f"/admin/storage_objects/objectstorageaccount/{account.pk}/change/")
    assert shown.status_code == 200 and b"presign_secret" not in shown.content


def test_the_bucket_action_deletes_empty_buckets_on_the_service_audited(
    admin_client: Client, staff: User, owner: Actor, admin_s3: Any
) -> None:
    empty, full = make_bucket(owner, "empty"), make_bucket(owner, "full")
    admin_s3.put_object(Bucket=full.physical_name, Key="keep", Body=b"data")

    response = admin_client.post(
        "/admin/storage_objects/bucket/",
        {"action": "delete_empty_buckets", "_selected_action": [str(empty.pk), str(full.pk)]},
        follow=True,
    )

    shown = [str(m) for m in response.context["messages"]]
    assert any("not empty" in m for m in shown), shown
    assert not s3.bucket_exists(empty.physical_name) and s3.bucket_exists(full.physical_name)
    assert Bucket.objects.get(pk=empty.pk).deleted_at is not None
    assert Bucket.objects.get(pk=full.pk).deleted_at is None
    event = AuditEvent.objects.get(action="bucket.delete", target_id=str(empty.pk))
    assert (event.actor_user, event.via, event.metadata["reason"]) == (staff, "admin", ADMIN_REASON)


def test_the_key_action_revokes_on_the_service_audited(
    admin_client: Client, staff: User, owner: Actor, client_for: Callable[..., Any]
) -> None:
    bucket = make_bucket(owner, "datasets")
    key = make_key(owner)

    response = admin_client.post(
        "/admin/storage_objects/accesskey/",
        {"action": "revoke_access_keys", "_selected_action": [key["id"]]},
        follow=True,
    )

    assert response.status_code == 200
    assert AccessKey.objects.get(pk=key["id"]).revoked_at is not None
    with pytest.raises(ClientError) as refused:
        client_for(key["access_key_id"], key["secret_access_key"]).list_objects_v2(
            Bucket=bucket.physical_name
        )
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    event = AuditEvent.objects.get(action="storage_access_key.revoke", target_id=key["id"])
    assert (event.actor_user, event.via) == (staff, "admin")
