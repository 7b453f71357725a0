"""A tenant's own access key against the real SeaweedFS, used from boto3 and from the real AWS CLI
(`.venv/bin/aws`, PyPI awscli): it lists and writes its tenant's buckets, is refused on another tenant's,
and stops working once revoked."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.db import IntegrityError

from apps.audit.models import AuditEvent
from apps.storage.objects import s3, services
from apps.storage.objects.models import AccessKey
from tests.conftest import Actor
from tests.tenants.support import assert_error

pytestmark = pytest.mark.usefixtures("object_storage")

AWS_CLI = Path(sys.executable).parent / "aws"


def make_bucket(actor: Actor, name: str) -> str:
    response = actor.token_client().post(actor.url("/buckets"), {"name": name}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["physical_name"])


def make_key(actor: Actor, name: str = "training", **headers: str) -> dict[str, Any]:
    response = actor.token_client().post(actor.url("/access-keys"), {"name": name}, format="json", **headers)
    assert response.status_code == 201, response.content
    return dict(response.json())


def error_code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def test_the_secret_is_shown_once_and_never_stored(owner: Actor) -> None:
    first = make_key(owner, HTTP_IDEMPOTENCY_KEY="key-1")
    assert first["secret_access_key"] and first["access_key_id"] and first["active"] is True
    assert first["endpoint_url"].startswith("http://127.0.0.1:")
    replay = make_key(owner, HTTP_IDEMPOTENCY_KEY="key-1")
    assert replay["id"] == first["id"] and replay["secret_access_key"] is None
    shown = owner.token_client().get(owner.url(f"/access-keys/{first['id']}")).json()
    assert "secret_access_key" not in shown
    stored = AccessKey.objects.get(pk=first["id"])
    assert first["secret_access_key"] not in str([getattr(stored, f.attname) for f in AccessKey._meta.fields])
    event = AuditEvent.objects.get(tenant=owner.tenant, action="storage_access_key.create")
    assert first["secret_access_key"] not in str(event.metadata)


def test_boto3_with_a_tenant_key_reaches_only_its_tenants_buckets(
    make_actor: Callable[..., Actor], client_for: Callable[..., Any]
) -> None:
    a, b = make_actor(), make_actor()
    a_datasets, a_models = make_bucket(a, "datasets"), make_bucket(a, "models")
    b_datasets = make_bucket(b, "datasets")
    key = make_key(a)
    mine = client_for(key["access_key_id"], key["secret_access_key"])

    mine.put_object(Bucket=a_datasets, Key="train/0001.bin", Body=b"\x00" * 128)
    mine.put_object(Bucket=a_models, Key="ckpt.pt", Body=b"weights")
    listed = mine.list_objects_v2(Bucket=a_datasets)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("train/0001.bin", 128)]
    assert mine.get_object(Bucket=a_models, Key="ckpt.pt")["Body"].read() == b"weights"
    # SeaweedFS filters ListBuckets by the policy: only the tenant's buckets.
    assert sorted(x["Name"] for x in mine.list_buckets()["Buckets"]) == sorted([a_datasets, a_models])
    mine.delete_object(Bucket=a_models, Key="ckpt.pt")

    # The other tenant's "datasets": no reading, listing or writing.
    assert error_code(lambda: mine.list_objects_v2(Bucket=b_datasets)) == "AccessDenied"
    assert error_code(lambda: mine.put_object(Bucket=b_datasets, Key="x", Body=b"x")) == "AccessDenied"
    assert error_code(lambda: mine.get_object(Bucket=b_datasets, Key="x")) == "AccessDenied"
    # Buckets are made and removed through the API (which bills them), never with the key.
    assert (
        error_code(lambda: mine.create_bucket(Bucket=a_datasets.replace("datasets", "sneaky")))
        == "AccessDenied"
    )
    assert error_code(lambda: mine.delete_bucket(Bucket=a_models)) == "AccessDenied"


def aws(key: dict[str, Any], endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "AWS_ACCESS_KEY_ID": key["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": key["secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    return subprocess.run(
        [str(AWS_CLI), "--endpoint-url", endpoint, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_aws_cli_with_a_tenant_key(
    make_actor: Callable[..., Actor], object_storage: dict[str, Any], tmp_path: Path
) -> None:
    a, b = make_actor(), make_actor()
    mine, theirs = make_bucket(a, "datasets"), make_bucket(b, "datasets")
    key = make_key(a)
    endpoint = object_storage["ENDPOINT_URL"]
    local = tmp_path / "hello.txt"
    local.write_text("hello from the cli\n")

    copied = aws(key, endpoint, "s3", "cp", str(local), f"s3://{mine}/hello.txt")
    assert copied.returncode == 0, copied.stderr
    listed = aws(key, endpoint, "s3", "ls", f"s3://{mine}/")
    assert listed.returncode == 0 and "hello.txt" in listed.stdout, listed.stderr
    buckets = aws(key, endpoint, "s3", "ls")
    assert buckets.returncode == 0 and mine in buckets.stdout and theirs not in buckets.stdout

    refused = aws(key, endpoint, "s3", "cp", str(local), f"s3://{theirs}/hello.txt")
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    refused = aws(key, endpoint, "s3api", "list-objects-v2", "--bucket", theirs)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr

    assert a.token_client().delete(a.url(f"/access-keys/{key['id']}")).status_code == 200
    revoked = aws(key, endpoint, "s3", "ls", f"s3://{mine}/")
    assert revoked.returncode != 0 and "InvalidAccessKeyId" in revoked.stderr


def test_a_revoked_key_stops_working_and_leaves_the_list(
    owner: Actor, client_for: Callable[..., Any]
) -> None:
    physical = make_bucket(owner, "datasets")
    key, other = make_key(owner, "one"), make_key(owner, "two")
    s3_client = client_for(key["access_key_id"], key["secret_access_key"])
    s3_client.put_object(Bucket=physical, Key="a", Body=b"a")

    revoked = owner.token_client().delete(owner.url(f"/access-keys/{key['id']}"))
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert error_code(lambda: s3_client.list_objects_v2(Bucket=physical)) == "InvalidAccessKeyId"
    # The other key of the tenant still works; revoking again changes nothing.
    assert (
        client_for(other["access_key_id"], other["secret_access_key"]).list_objects_v2(Bucket=physical)[
            "KeyCount"
        ]
        == 1
    )
    assert owner.token_client().delete(owner.url(f"/access-keys/{key['id']}")).status_code == 200
    assert AuditEvent.objects.filter(tenant=owner.tenant, action="storage_access_key.revoke").count() == 1
    listed = owner.token_client().get(owner.url("/access-keys")).json()["results"]
    assert [k["id"] for k in listed] == [other["id"]]
    assert owner.token_client().get(owner.url(f"/access-keys/{key['id']}")).json()["revoked_at"]


def test_another_tenants_key_answers_404(make_actor: Callable[..., Actor]) -> None:
    a, b = make_actor(), make_actor()
    key = make_key(b)
    assert_error(a.token_client().get(a.url(f"/access-keys/{key['id']}")), 404, "not_found")
    assert_error(a.token_client().delete(a.url(f"/access-keys/{key['id']}")), 404, "not_found")
    assert AccessKey.objects.get(pk=key["id"]).revoked_at is None


def test_access_key_limit(owner: Actor, settings: Any) -> None:
    settings.OBJECT_STORAGE_MAX_ACCESS_KEYS_PER_TENANT = 1
    make_key(owner)
    response = owner.token_client().post(owner.url("/access-keys"), {"name": "second"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "quota_exceeded"


def test_a_failed_compensation_leaves_the_insert_error_and_a_log_line_without_the_secret(
    owner: Actor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The key is created on the real service; its row then collides with one written meanwhile (the
    insert fails), and deleting the key again fails too. That second failure is a test double at the S3
    boundary: SeaweedFS cannot be made to refuse one call on demand."""
    real_create = s3.create_access_key
    made: dict[str, str] = {}

    def create_then_collide(user_name: str) -> tuple[str, str]:
        access_key_id, secret = real_create(user_name)
        made.update(id=access_key_id, secret=secret)
        # The row the insert will collide with.
        AccessKey.objects.create(tenant=owner.tenant, access_key_id=access_key_id, name="meanwhile")
        return access_key_id, secret

    def refuse_delete(*, user_name: str, access_key_id: str) -> None:
        raise s3.Unavailable("delete access key: connection refused")

    with (
        monkeypatch.context() as patched,  # undone before the fixture deletes the key on the service
        caplog.at_level(logging.ERROR, logger="apps.storage.objects.services"),
        pytest.raises(IntegrityError),
    ):
        patched.setattr(s3, "create_access_key", create_then_collide)
        patched.setattr(s3, "delete_access_key", refuse_delete)
        services.access_key_create(actor=owner.user, tenant=owner.tenant, name="ci")
    [record] = [r for r in caplog.records if r.name == "apps.storage.objects.services"]
    assert made["id"] in record.getMessage() and "delete it on the storage service" in record.getMessage()
    assert made["secret"] not in record.getMessage()
    assert made["secret"] not in caplog.text
