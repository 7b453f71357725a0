"""The benchmarks' own database: recreated from a migrated template before each benchmark.

The template (gpucloud_bench_template) is migrated once and rebuilt when the migrations change (a digest of
every migration file is kept as the template's comment); copying it takes a second where migrating takes a
minute on a busy machine.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections

from bench.common import REPO

TEMPLATE_SUFFIX = "_template"


def admin_connection() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    )


def migrations_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(REPO.glob("apps/**/migrations/*.py")):
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _drop(cur: psycopg.Cursor[Any], name: str) -> None:
    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _template_comment(cur: psycopg.Cursor[Any], name: str) -> str | None:
    cur.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name])
    row = cur.fetchone()
    return row[0] if row else None


def ensure_template(name: str, progress: Any) -> str:
    template = name + TEMPLATE_SUFFIX
    digest = migrations_digest()
    with admin_connection() as admin, admin.cursor() as cur:
        if _template_comment(cur, template) == digest:
            return template
        progress(f"migrating the template database {template} (migrations changed or first run)")
        _drop(cur, template)
        cur.execute(f'CREATE DATABASE "{template}"')
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "BENCH_DATABASE": template}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True
    )
    with admin_connection() as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [template])
        cur.execute(f"COMMENT ON DATABASE \"{template}\" IS '{digest}'")
    return template


def reset(progress: Any) -> None:
    """Drop the benchmark database and copy it again from the migrated template."""
    name = settings.DATABASES["default"]["NAME"]
    if name != getattr(settings, "BENCH_DATABASE", None):
        raise RuntimeError(f"refusing to drop {name!r}: not the benchmark database (use bench.settings)")
    template = ensure_template(name, progress)
    connections.close_all()
    with admin_connection() as admin, admin.cursor() as cur:
        _drop(cur, name)
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    progress(f"database {name} recreated from {template}")


def analyze() -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would give them a little later."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
