"""Rows for tests that never reach the storage service (the isolation harness, selectors, the API's 404s)."""

from __future__ import annotations

import secrets
from typing import Any

from apps.storage.objects import names
from apps.storage.objects.models import AccessKey, Bucket
from apps.storage.objects.services import storage_account


def bucket_row(tenant: Any, *, name: str = "datasets", created_by: Any = None, **fields: Any) -> Bucket:
    account = storage_account(tenant)
    return Bucket.objects.create(
        tenant=tenant,
        name=name,
        physical_name=names.physical_name(account.prefix, name),
        created_by=created_by,
        **fields,
    )


def access_key_row(tenant: Any, *, name: str = "ci", created_by: Any = None, **fields: Any) -> AccessKey:
    return AccessKey.objects.create(
        tenant=tenant,
        access_key_id=f"TESTKEY{secrets.token_hex(8).upper()}",
        name=name,
        created_by=created_by,
        **fields,
    )
