"""What one launch costs the database (issue 20, "Admission in a handful of statements").

A launch through the API was 33 statements before issue 20 (counted here with the same capture); it is
pinned at LAUNCH_STATEMENTS now, and a tenant with a long history (1,000 terminated instances, 2,000 ledger
rows) pays exactly what a fresh one does. The counting queries must also read live rows only: with
sequential scans off, PostgreSQL answers them from the partial indexes (a plan that still reads the tenant's
terminated rows would not match their predicates).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts import services as account_services
from apps.billing.models import UsageRecord
from apps.catalog.models import InstanceType, Region
from apps.instances.models import Instance
from apps.instances.selectors import QUOTA_ROWS, held_by_pool
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.instances.helpers import ed25519_public_key, instance_row
from tests.quotas.conftest import set_quota
from tests.support.factories import volume_row

pytestmark = pytest.mark.django_db

# The API launch below (token auth, one SSH key, no Idempotency-Key), statements sent to PostgreSQL
# including the savepoints of the test's own transaction. Measured: 33 before issue 20, 25 after, plus the
# two NOTIFYs (the operator's wake-up and the state for waiting clients, apps/core/notify.py) that
# PostgreSQL sends at commit, plus (issue 21) the read of the pool's nodes that checks one has room.
LAUNCH_STATEMENTS = 28
_ids = itertools.count()


def _launch_statements(actor: Actor, launch: Callable[..., Any], key_id: str) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = launch(actor, ssh_key_ids=[key_id])
    assert response.status_code == 201, response.content
    return len(captured.captured_queries), [q["sql"] for q in captured.captured_queries]


def _history(actor: Actor, *, instances: int, ledger_rows: int) -> None:
    """Terminated instances and ledger rows, written in bulk (no admission: they stand for the past)."""
    h100 = InstanceType.objects.select_related("gpu_type").get(slug="gpu-h100x1")
    template = instance_row(
        tenant=actor.tenant,
        instance_type=h100,
        region=_region(),
        created_by=actor.user,
        name="template",
        state="terminated",
    )
    rows = []
    for n in range(instances):
        row = Instance(**{f.attname: getattr(template, f.attname) for f in Instance._meta.concrete_fields})
        row.id, row.name, row.holds_compute = uuid.uuid4(), f"old-{n}", False
        rows.append(row)
    Instance.objects.bulk_create(rows)
    end = timezone.now().replace(microsecond=0) - timedelta(days=2)
    UsageRecord.objects.bulk_create(
        UsageRecord(
            id=f"history:{next(_ids)}",
            tenant=actor.tenant,
            resource_type="instance",
            resource_id=f"history-{n}",
            meter="instance_seconds:gpu-h100x1",
            period=DateTimeTZRange(end - timedelta(minutes=n + 1), end - timedelta(minutes=n), "[)"),
            quantity_seconds=60,
            unit_price_per_hour="0.0000",
            amount="0.000000",
        )
        for n in range(ledger_rows)
    )


def _region() -> Region:
    return Region.objects.get(slug="us-east-1")


def test_a_launch_takes_a_pinned_number_of_statements(
    launch: Callable[..., Any], tenant_owner: Actor, ssh_key: Any
) -> None:
    set_quota(tenant_owner.tenant)
    launch(tenant_owner)  # the tenant's first launch creates nothing on the way any more, but warm anyway
    count, statements = _launch_statements(tenant_owner, launch, str(ssh_key.pk))
    assert count <= LAUNCH_STATEMENTS, "\n".join(s[:160] for s in statements)
    # The response is rendered from the instance in memory: nothing reads the new row back.
    assert not [s for s in statements if s.startswith('SELECT "instances_instance"."id", ')]
    # The quota row is locked once (no plain read first) and the pool's row is locked too.
    assert sum('FROM "quotas_tenantquota"' in s for s in statements) == 1
    pool_lock = [
        i for i, s in enumerate(statements) if 'FROM "catalog_regioncapacity"' in s and "FOR UPDATE" in s
    ]
    assert len(pool_lock) == 1
    # Every launch into the pool queues on its row: it is locked after the launch's writes, so it is held
    # for the capacity sum and the commit only (burst_admission in docs/benchmarks.md).
    writes = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO")]
    assert {"instances_instance", "instances_instanceevent", "audit_auditevent"} <= {
        statements[i].split('"')[1] for i in writes
    }
    assert max(writes) < pool_lock[0], "\n".join(s[:160] for s in statements)


def test_a_tenant_with_a_long_history_launches_in_as_many_statements_as_a_fresh_one(
    launch: Callable[..., Any], make_actor: Callable[..., Actor], ssh_key: Any, tenant_owner: Actor
) -> None:
    fresh = make_actor(Role.OWNER)
    fresh_key = account_services.ssh_key_create(
        actor=fresh.user, tenant=fresh.tenant, name="k", public_key=ed25519_public_key()
    )
    for actor in (fresh, tenant_owner):
        set_quota(actor.tenant)
        launch(actor)
    _history(tenant_owner, instances=1000, ledger_rows=2000)
    assert Instance.objects.filter(tenant=tenant_owner.tenant, state="terminated").count() == 1001

    fresh_count, _ = _launch_statements(fresh, launch, str(fresh_key.pk))
    old_count, statements = _launch_statements(tenant_owner, launch, str(ssh_key.pk))
    assert old_count == fresh_count, "\n".join(s[:160] for s in statements)


def _plan(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    return plan


def test_admission_counts_read_live_rows_through_the_partial_indexes(
    catalog: Any, tenant_owner: Actor
) -> None:
    _history(tenant_owner, instances=200, ledger_rows=0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE instances_instance")
    usage = Instance.objects.filter(QUOTA_ROWS, tenant=tenant_owner.tenant).values("gpu_type_id").order_by()
    sql, params = usage.query.sql_with_params()
    assert "instance_quota_rows_idx" in _plan(sql, params)
    region = _region()
    pool = Instance.objects.filter(holds_compute=True, region_id=region.pk).values("gpu_type_id").order_by()
    sql, params = pool.query.sql_with_params()
    plan = _plan(sql, params)
    # Either partial index leaves terminated rows out (holding compute implies the quota rows' predicate).
    assert "instance_pool_holdings_idx" in plan or "instance_quota_rows_idx" in plan, plan
    assert held_by_pool(region_id=region.pk) == {}  # the terminated rows hold nothing


@pytest.mark.parametrize(
    ("keys", "volumes"),
    [
        pytest.param(0, 0, id="bare"),
        pytest.param(1, 1, id="one-key-one-volume"),
        pytest.param(2, 2, id="two-keys-two-volumes-read-back"),
    ],
)
def test_the_launch_response_is_what_reading_the_instance_back_shows(
    launch: Callable[..., Any], tenant_owner: Actor, keys: int, volumes: int
) -> None:
    set_quota(tenant_owner.tenant)
    key_ids = [
        str(
            account_services.ssh_key_create(
                actor=tenant_owner.user,
                tenant=tenant_owner.tenant,
                name=name,
                public_key=ed25519_public_key(),
            ).pk
        )
        for name in ["Zed", "alpha"][:keys]
    ]
    mounts = [
        {"volume_id": str(volume_row(tenant_owner.tenant, name=f"v{n}").pk), "mount_path": path}
        for n, path in enumerate(["/data_b", "/data-A"][:volumes])
    ]
    created = launch(tenant_owner, ssh_key_ids=key_ids, volumes=mounts)
    assert created.status_code == 201, created.content
    body = created.json()
    read = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{body['id']}"))
    assert read.status_code == 200
    assert body == read.json()
    assert len(body["ssh_key_ids"]) == keys and len(body["volumes"]) == volumes
