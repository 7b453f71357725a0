"""Unit-level cases of apps/storage/objects/s3.py with moto (an in-process fake of AWS S3 and IAM).

moto is used only here, for what is slow or awkward on a real server (over a thousand objects, the exact
policy document we store); every behaviour a tenant sees is tested against the real SeaweedFS in the other
files of this directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from apps.storage.objects import names, s3


@pytest.fixture
def moto(settings: Any) -> Iterator[None]:
    settings.OBJECT_STORAGE = {
        "ENDPOINT_URL": "https://s3.amazonaws.com",
        "IAM_ENDPOINT_URL": "https://iam.amazonaws.com",
        "REGION": "us-east-1",
        "ACCESS_KEY_ID": "testing",
        "SECRET_ACCESS_KEY": "testing",
        "ADDRESSING_STYLE": "path",
        "BUCKET_PREFIX": "unit",
    }
    s3._client.cache_clear()  # clients made outside the mock would reach the network
    with mock_aws():
        yield
    s3._client.cache_clear()


@pytest.mark.usefixtures("moto")
def test_usage_and_emptying_page_through_more_than_a_thousand_objects() -> None:
    s3.create_bucket("unit-abcdefgh-big")
    s3.create_bucket("unit-abcdefgh-big")  # creating a bucket we own again counts as created
    raw = boto3.client("s3", region_name="us-east-1")
    for i in range(1005):
        raw.put_object(Bucket="unit-abcdefgh-big", Key=f"k{i:04d}", Body=b"ab")

    assert s3.bucket_usage("unit-abcdefgh-big") == (2010, 1005)
    assert not s3.bucket_is_empty("unit-abcdefgh-big")
    with pytest.raises(s3.BucketNotEmpty):
        _delete_raw("unit-abcdefgh-big")
    assert s3.empty_bucket("unit-abcdefgh-big") == 1005
    assert s3.bucket_is_empty("unit-abcdefgh-big")
    s3.delete_bucket("unit-abcdefgh-big")
    s3.delete_bucket("unit-abcdefgh-big")  # gone already: still fine
    assert not s3.bucket_exists("unit-abcdefgh-big")


def _delete_raw(name: str) -> None:
    with s3._calling(f"delete bucket {name}"):
        s3._s3().delete_bucket(Bucket=name)


@pytest.mark.usefixtures("moto")
def test_the_tenant_user_gets_a_policy_naming_only_its_prefix() -> None:
    prefix = names.new_tenant_prefix("unit")
    user = names.iam_user_name(prefix)
    s3.ensure_user(user_name=user, policy=s3.tenant_policy(prefix))
    s3.ensure_user(user_name=user, policy=s3.tenant_policy(prefix))  # repeatable

    stored = boto3.client("iam", region_name="us-east-1").get_user_policy(
        UserName=user, PolicyName=s3.POLICY_NAME
    )
    document = stored["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    [statement] = document["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [f"arn:aws:s3:::{prefix}*", f"arn:aws:s3:::{prefix}*/*"]
    assert "s3:ListAllMyBuckets" not in statement["Action"]
    assert not any(a in statement["Action"] for a in ("s3:*", "s3:CreateBucket", "s3:DeleteBucket"))

    key_id, secret = s3.create_access_key(user)
    assert secret and s3.list_access_keys(user) == [key_id]
    s3.delete_access_key(user_name=user, access_key_id=key_id)
    s3.delete_access_key(user_name=user, access_key_id=key_id)  # gone already: still fine
    assert s3.list_access_keys(user) == []


def test_names() -> None:
    assert names.name_errors("datasets") == []
    assert names.name_errors("a1-b2") == []
    assert names.name_errors("ab") and names.name_errors("a" * 41) and names.name_errors("UPPER")
    assert names.name_errors("x--y") == ["Must not contain two hyphens in a row."]
    prefix = names.new_tenant_prefix("gpc")
    assert len(prefix) == len("gpc-") + names.TENANT_ID_LENGTH + 1 and prefix.endswith("-")
    longest = names.physical_name(
        names.new_tenant_prefix("p" * names.DEPLOYMENT_PREFIX_MAX), "n" * names.NAME_MAX
    )
    assert len(longest) <= 63
    assert names.deployment_prefix_errors("p" * (names.DEPLOYMENT_PREFIX_MAX + 1))
