"""The S3-compatible service: the only module that imports boto3 (docs/storage.md).

Everything here uses the admin identity of settings.OBJECT_STORAGE, except presigning, which signs with a
tenant's own presign key (its policy reaches only that tenant's buckets). Service errors come out as the
exceptions below, never as botocore's, so callers stay independent of the SDK.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

logger = logging.getLogger(__name__)

# What a tenant's access key may do on its own buckets: objects and listing, never creating or deleting
# buckets (those go through the API, which bills them) and never bucket policies or ACLs.
TENANT_ACTIONS = (
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListBucketMultipartUploads",
    "s3:ListMultipartUploadParts",
)
# What a tenant's presign identity may do: the two operations presigned URLs exist for. Nothing else, so a
# leaked presign key could not list or delete anything.
PRESIGN_ACTIONS = ("s3:GetObject", "s3:PutObject")
# Taken away while the tenant stores at least its byte quota: no new object, no multipart upload (on AWS and
# SeaweedFS both imply s3:PutObject), while reading, listing and deleting (to get back under) still work.
WRITE_ACTIONS = frozenset({"s3:PutObject"})
POLICY_NAME = "gpucloud-tenant-buckets"


class StorageError(Exception):
    """The service refused or failed; `code` is the S3/IAM error code when there is one."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.code = code


class NotConfigured(StorageError):
    pass


class Unavailable(StorageError):
    """The service did not answer (connection refused, timeout, 5xx)."""


class NoSuchBucket(StorageError):
    pass


class BucketNotEmpty(StorageError):
    pass


class BucketTaken(StorageError):
    """The physical name belongs to someone else on the service."""


class LimitExceeded(StorageError):
    pass


@dataclass(frozen=True)
class Config:
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    iam_endpoint_url: str
    public_endpoint_url: str
    addressing_style: str
    timeout_seconds: int


def config() -> Config:
    conf = settings.OBJECT_STORAGE
    if not (conf.get("ENDPOINT_URL") and conf.get("ACCESS_KEY_ID") and conf.get("SECRET_ACCESS_KEY")):
        raise NotConfigured("Object storage is not configured (settings.OBJECT_STORAGE).")
    endpoint = str(conf["ENDPOINT_URL"])
    return Config(
        endpoint_url=endpoint,
        region=str(conf.get("REGION") or "us-east-1"),
        access_key_id=str(conf["ACCESS_KEY_ID"]),
        secret_access_key=str(conf["SECRET_ACCESS_KEY"]),
        iam_endpoint_url=str(conf.get("IAM_ENDPOINT_URL") or endpoint),
        public_endpoint_url=str(conf.get("PUBLIC_ENDPOINT_URL") or endpoint),
        addressing_style=str(conf.get("ADDRESSING_STYLE") or "path"),
        timeout_seconds=int(conf.get("TIMEOUT_SECONDS") or 10),
    )


def configured() -> bool:
    try:
        config()
    except NotConfigured:
        return False
    return True


@functools.lru_cache(maxsize=16)
def _client(service: str, endpoint_url: str, conf: Config) -> Any:
    # Clients are thread-safe and expensive to build: one per service, endpoint and configuration.
    return _make_client(service, endpoint_url, conf, conf.access_key_id, conf.secret_access_key)


@functools.lru_cache(maxsize=256)
def _signer(endpoint_url: str, conf: Config, access_key_id: str, secret_access_key: str) -> Any:
    # A tenant's presign client, kept in this process only (the secret lives encrypted in the database).
    return _make_client("s3", endpoint_url, conf, access_key_id, secret_access_key)


def _make_client(
    service: str, endpoint_url: str, conf: Config, access_key_id: str, secret_access_key: str
) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=conf.region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=BotoConfig(
            signature_version="s3v4",
            s3={"addressing_style": conf.addressing_style},
            connect_timeout=conf.timeout_seconds,
            read_timeout=conf.timeout_seconds * 3,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def _s3(public: bool = False) -> Any:
    conf = config()
    return _client("s3", conf.public_endpoint_url if public else conf.endpoint_url, conf)


def _iam() -> Any:
    conf = config()
    return _client("iam", conf.iam_endpoint_url, conf)


_BY_CODE: dict[str, type[StorageError]] = {
    "NoSuchBucket": NoSuchBucket,
    "BucketNotEmpty": BucketNotEmpty,
    "BucketAlreadyExists": BucketTaken,
    "LimitExceeded": LimitExceeded,
    "TooManyBuckets": LimitExceeded,
}


def _translate(exc: Exception, what: str) -> StorageError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"{what}: {code} {error.get('Message', '')}".strip()
        if status >= 500 or code in ("ServiceUnavailable", "SlowDown", "InternalError"):
            return Unavailable(message, code=code)
        return _BY_CODE.get(code, StorageError)(message, code=code)
    return Unavailable(f"{what}: {exc}")


@contextmanager
def _calling(what: str) -> Iterator[None]:
    """`with _calling("create bucket x"):` turns SDK errors into StorageError subclasses, logged."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        translated = _translate(exc, what)
        logger.warning("object storage call failed", extra={"call": what, "code": translated.code})
        raise translated from exc


# --- buckets -----------------------------------------------------------------------------------------


def create_bucket(name: str) -> None:
    """Create the bucket; one that the admin identity already owns counts as created (an earlier attempt
    that got this far before its transaction rolled back)."""
    conf = config()
    kwargs: dict[str, Any] = {"Bucket": name}
    if conf.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": conf.region}
    try:
        with _calling(f"create bucket {name}"):
            _s3().create_bucket(**kwargs)
    except StorageError as exc:
        if exc.code != "BucketAlreadyOwnedByYou":
            raise


def delete_bucket(name: str) -> None:
    """Delete an empty bucket; one that is already gone counts as deleted."""
    try:
        with _calling(f"delete bucket {name}"):
            _s3().delete_bucket(Bucket=name)
    except NoSuchBucket:
        return


def bucket_exists(name: str) -> bool:
    try:
        with _calling(f"head bucket {name}"):
            _s3().head_bucket(Bucket=name)
    except StorageError as exc:
        if exc.code in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def _objects(name: str) -> Iterator[dict[str, Any]]:
    with _calling(f"list objects of {name}"):
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=name):
            yield from page.get("Contents", [])


def bucket_usage(name: str) -> tuple[int, int]:
    """(bytes stored, object count). Lists every object: its cost grows with the bucket."""
    size = count = 0
    for obj in _objects(name):
        size += int(obj.get("Size", 0))
        count += 1
    return size, count


def bucket_is_empty(name: str) -> bool:
    with _calling(f"list objects of {name}"):
        page = _s3().list_objects_v2(Bucket=name, MaxKeys=1)
    return not page.get("KeyCount", len(page.get("Contents", [])))


def empty_bucket(name: str) -> int:
    """Delete every object (and every version and unfinished upload where the service keeps them).
    Returns how many objects were deleted. Deletes the first page until there is none, so memory stays
    bounded however large the bucket is."""
    client = _s3()
    deleted = 0
    with _calling(f"abort uploads of {name}"):
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    while True:
        with _calling(f"list objects of {name}"):
            keys = [{"Key": o["Key"]} for o in client.list_objects_v2(Bucket=name).get("Contents", [])]
        if not keys:
            break
        with _calling(f"delete objects of {name}"):
            result = client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        if result.get("Errors"):  # without this check a refused delete would loop forever
            first = result["Errors"][0]
            raise StorageError(
                f"delete objects of {name}: {first.get('Message', '')}", code=first.get("Code", "")
            )
        deleted += len(keys)
    try:
        with _calling(f"list versions of {name}"):
            pages = list(client.get_paginator("list_object_versions").paginate(Bucket=name))
    except StorageError:
        pages = []  # a service without versioning has nothing more to delete
    for page in pages:
        versions = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if versions:
            with _calling(f"delete versions of {name}"):
                client.delete_objects(Bucket=name, Delete={"Objects": versions, "Quiet": True})
    return deleted


def presign(
    *,
    method: str,
    bucket: str,
    key: str,
    expires_in: int,
    credentials: tuple[str, str],
    content_length: int | None = None,
) -> str:
    """A URL that lets anyone holding it GET or PUT one object until it expires, signed with `credentials`
    (the tenant's presign key: the service checks its policy and status on every use) against the public
    endpoint (the signature covers the host). A PUT signs `content_length` too: the service refuses an
    upload of any other length (SigV4 signed header), so the URL cannot store more than that."""
    operation = {"get": "get_object", "put": "put_object"}[method]
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if method == "put":
        if content_length is None:
            raise ValueError("A presigned PUT needs its content length.")
        params["ContentLength"] = content_length
    conf = config()
    client = _signer(conf.public_endpoint_url, conf, *credentials)
    with _calling(f"presign {method} {bucket}"):
        url = client.generate_presigned_url(operation, Params=params, ExpiresIn=expires_in)
    return str(url)


# --- identities ----------------------------------------------------------------------------------------


def _policy(tenant_prefix: str, actions: tuple[str, ...], writable: bool) -> str:
    allowed = [a for a in actions if writable or a not in WRITE_ACTIONS]
    resources = [f"arn:aws:s3:::{tenant_prefix}*", f"arn:aws:s3:::{tenant_prefix}*/*"]
    statement = {"Effect": "Allow", "Action": allowed, "Resource": resources}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))


def tenant_policy(tenant_prefix: str, *, writable: bool = True) -> str:
    """The policy of a tenant's IAM user: its own buckets (every name under its prefix) and nothing else;
    without s3:PutObject while its writes are blocked (the byte quota).

    No s3:ListAllMyBuckets: on AWS it needs Resource "*" and would show every tenant's bucket names.
    """
    return _policy(tenant_prefix, TENANT_ACTIONS, writable)


def presign_policy(tenant_prefix: str, *, writable: bool = True) -> str:
    """The policy of a tenant's presign identity: get and put objects of its own buckets (get only while
    its writes are blocked)."""
    return _policy(tenant_prefix, PRESIGN_ACTIONS, writable)


def ensure_user(*, user_name: str, policy: str) -> None:
    """Create the IAM user if missing and (re)attach its inline policy; safe to repeat."""
    iam = _iam()
    try:
        with _calling(f"create IAM user {user_name}"):
            iam.create_user(UserName=user_name)
    except StorageError as exc:
        if exc.code != "EntityAlreadyExists":
            raise
    put_policy(user_name=user_name, policy=policy)


def put_policy(*, user_name: str, policy: str) -> bool:
    """Replace the user's inline policy; False when the user does not exist (it gets the policy when it is
    created)."""
    try:
        with _calling(f"put policy of {user_name}"):
            _iam().put_user_policy(UserName=user_name, PolicyName=POLICY_NAME, PolicyDocument=policy)
    except StorageError as exc:
        if exc.code == "NoSuchEntity":
            return False
        raise
    return True


def set_access_key_status(*, user_name: str, access_key_id: str, active: bool) -> bool:
    """Suspend (Inactive) or restore (Active) a key with IAM UpdateAccessKey: the key, its secret and the
    data it reaches are kept, but the service refuses every request signed with an inactive key. False when
    the key does not exist."""
    status = "Active" if active else "Inactive"
    try:
        with _calling(f"set access key of {user_name} {status}"):
            _iam().update_access_key(UserName=user_name, AccessKeyId=access_key_id, Status=status)
    except StorageError as exc:
        if exc.code == "NoSuchEntity":
            return False
        raise
    return True


def create_access_key(user_name: str) -> tuple[str, str]:
    """A new key of the user: (access key id, secret). The secret is never retrievable again."""
    with _calling(f"create access key of {user_name}"):
        key = _iam().create_access_key(UserName=user_name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def delete_access_key(*, user_name: str, access_key_id: str) -> None:
    """Delete the key; one that is already gone counts as deleted."""
    try:
        with _calling(f"delete access key of {user_name}"):
            _iam().delete_access_key(UserName=user_name, AccessKeyId=access_key_id)
    except StorageError as exc:
        if exc.code != "NoSuchEntity":
            raise


def list_access_keys(user_name: str) -> list[str]:
    try:
        with _calling(f"list access keys of {user_name}"):
            metadata = _iam().list_access_keys(UserName=user_name).get("AccessKeyMetadata", [])
    except StorageError as exc:
        if exc.code == "NoSuchEntity":
            return []
        raise
    return [str(m["AccessKeyId"]) for m in metadata]
