"""Bucket names: what tenants choose and the physical name on the shared S3 service (pure functions).

A tenant's buckets live under its own prefix, `<deployment prefix>-<8 random characters>-`, so two tenants can
both call a bucket "datasets" and a tenant's access-key policy can name `arn:aws:s3:::<tenant prefix>*`. The
random part has a fixed length and the prefix ends with "-", so no tenant's prefix is a prefix of another's.
"""

from __future__ import annotations

import re
import secrets
import string

NAME_MIN, NAME_MAX = 3, 40
# S3 allows 63 characters: prefix (at most 12) + "-" + 8 + "-" + name (at most 40) = 62.
DEPLOYMENT_PREFIX_MAX = 12
TENANT_ID_LENGTH = 8
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_ALPHABET = string.ascii_lowercase + string.digits


def name_errors(name: str) -> list[str]:
    """Why `name` is not a valid bucket name (empty when it is)."""
    errors = []
    if not NAME_MIN <= len(name) <= NAME_MAX:
        errors.append(f"Must be {NAME_MIN} to {NAME_MAX} characters long.")
    if not _NAME.fullmatch(name):
        errors.append(
            "Use lowercase letters, digits and hyphens, starting and ending with a letter or digit."
        )
    elif "--" in name:
        errors.append("Must not contain two hyphens in a row.")
    return errors


def deployment_prefix_errors(prefix: str) -> list[str]:
    if not 1 <= len(prefix) <= DEPLOYMENT_PREFIX_MAX or not _NAME.fullmatch(prefix) or "--" in prefix:
        return [
            f"OBJECT_STORAGE BUCKET_PREFIX must be 1 to {DEPLOYMENT_PREFIX_MAX} lowercase letters, digits or "
            "single hyphens, starting and ending with a letter or digit."
        ]
    return []


def new_tenant_prefix(deployment_prefix: str) -> str:
    """A fresh tenant prefix such as "gpc-k3x9a2b1-" (uniqueness is the database's job)."""
    return f"{deployment_prefix}-{''.join(secrets.choice(_ALPHABET) for _ in range(TENANT_ID_LENGTH))}-"


def physical_name(tenant_prefix: str, name: str) -> str:
    return f"{tenant_prefix}{name}"


def iam_user_name(tenant_prefix: str) -> str:
    return tenant_prefix.rstrip("-")


def presign_user_name(tenant_prefix: str) -> str:
    """The tenant's presign identity: a second IAM user, so its key never counts against the tenant's own
    keys (AWS allows two per user) and its policy can be narrower."""
    return f"{iam_user_name(tenant_prefix)}-presign"
