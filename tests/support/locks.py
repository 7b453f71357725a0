"""Row locks seen from another session: what a concurrent transaction would be refused."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.processes import subprocess_database_url


def key_share_refused(table: str, pk: Any) -> bool:
    """Whether another session is refused FOR KEY SHARE on the row at once (what a foreign-key check
    takes)."""
    with psycopg.connect(subprocess_database_url(), autocommit=True) as other:
        other.execute("SET lock_timeout = '100ms'")
        try:
            other.execute(f'SELECT 1 FROM "{table}" WHERE id = %s FOR KEY SHARE', [pk])  # noqa: S608
        except psycopg.errors.LockNotAvailable:
            return True
    return False
