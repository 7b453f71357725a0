"""Fixtures for object storage: the real SeaweedFS that scripts/s3.sh runs on 127.0.0.1 (started by
`make test`, or here when it is not running). A server that cannot be started fails the tests, never skips
them; under CI=true the message says so.

`object_storage` points settings at it with a test bucket prefix and, after the test, deletes every bucket,
access key and IAM user the test made, through the admin identity.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from django.test import override_settings

from apps.storage.objects import s3
from apps.storage.objects.models import Bucket, ObjectStorageAccount
from config.settings.env import env_file, local_s3_env_file

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "s3.sh"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=1800, check=False
    )


@pytest.fixture(scope="session")
def s3_server() -> dict[str, str]:
    """The local server's OBJECT_STORAGE_* values (from the file scripts/s3.sh writes)."""
    if _script("status").returncode != 0:
        started = _script("start")
        if started.returncode != 0:
            where = "CI=true: " if os.environ.get("CI") == "true" else ""
            pytest.fail(
                f"{where}the local S3 server (SeaweedFS) is not running and could not be started "
                f"(`make s3`, scripts/s3.sh):\n{started.stderr[-2000:]}",
                pytrace=False,
            )
    values = env_file(local_s3_env_file())
    assert values.get("OBJECT_STORAGE_ENDPOINT_URL"), f"no settings in {local_s3_env_file()}"
    return values


@pytest.fixture
def object_storage(settings: Any, s3_server: dict[str, str], db: Any) -> Iterator[dict[str, Any]]:
    conf = {
        "ENDPOINT_URL": s3_server["OBJECT_STORAGE_ENDPOINT_URL"],
        "IAM_ENDPOINT_URL": s3_server["OBJECT_STORAGE_IAM_ENDPOINT_URL"],
        "REGION": s3_server["OBJECT_STORAGE_REGION"],
        "ACCESS_KEY_ID": s3_server["OBJECT_STORAGE_ACCESS_KEY_ID"],
        "SECRET_ACCESS_KEY": s3_server["OBJECT_STORAGE_SECRET_ACCESS_KEY"],
        "PUBLIC_ENDPOINT_URL": "",
        "ADDRESSING_STYLE": "path",
        "BUCKET_PREFIX": "test",
        "TIMEOUT_SECONDS": 10,
    }
    settings.OBJECT_STORAGE = conf
    yield conf
    with override_settings(OBJECT_STORAGE=conf):  # the test may have pointed settings elsewhere
        _clean_up()


def _clean_up() -> None:
    for bucket in Bucket.objects.filter(deleted_at__isnull=True):
        try:
            s3.empty_bucket(bucket.physical_name)
            s3.delete_bucket(bucket.physical_name)
        except s3.NoSuchBucket:
            pass
    for account in ObjectStorageAccount.objects.all():
        for user in (account.iam_user, account.presign_user):
            for key_id in s3.list_access_keys(user):
                s3.delete_access_key(user_name=user, access_key_id=key_id)
            iam = s3._iam()
            with contextlib.suppress(iam.exceptions.NoSuchEntityException):
                iam.delete_user_policy(UserName=user, PolicyName=s3.POLICY_NAME)
            with contextlib.suppress(iam.exceptions.NoSuchEntityException):
                iam.delete_user(UserName=user)


@pytest.fixture
def client_for(object_storage: dict[str, Any]) -> Callable[..., Any]:
    """An S3 client (boto3) with the given credentials, as a tenant's own program would make it."""

    def make(access_key_id: str, secret_access_key: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=object_storage["ENDPOINT_URL"],
            region_name=object_storage["REGION"],
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    return make


@pytest.fixture
def admin_s3(object_storage: dict[str, Any], client_for: Callable[..., Any]) -> Any:
    return client_for(object_storage["ACCESS_KEY_ID"], object_storage["SECRET_ACCESS_KEY"])
