"""GET /api/v1/tenants/{slug}/billing/usage/export: a tenant's ledger rows in [from, to) as CSV or JSON,
streamed a chunk at a time, money as decimal strings; 400 naming the field, billing.read, 404 elsewhere."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.test.utils import CaptureQueriesContext

from apps.billing import exports
from apps.billing.metering import amount_for
from apps.billing.models import UsageRecord
from apps.tenants.roles import Role
from tests.storage.objects.helpers import bucket_row
from tests.support.factories import make_instance, volume_row

pytestmark = pytest.mark.django_db

OCTOBER = "?from=2026-10-01&to=2026-11-01"


def at(day: int, hour: int = 0, minute: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def row(
    tenant,
    resource_id: str,
    start: datetime,
    *,
    seconds: int = 60,
    price: str = "2.4900",
    resource_type: str = "instance",
    meter: str = "instance_seconds:gpu-h100x1",
    **extra,
) -> UsageRecord:
    kind = extra.pop("kind", "usage")
    quantity = extra.pop("quantity_seconds", seconds)
    return UsageRecord.objects.create(
        id=extra.pop("id", f"{resource_type}:{resource_id}:{meter}:{int(start.timestamp())}"),
        tenant=tenant,
        resource_type=resource_type,
        resource_id=resource_id,
        meter=meter,
        period=DateTimeTZRange(start, start + timedelta(seconds=seconds), "[)"),
        quantity_seconds=quantity,
        unit_price_per_hour=Decimal(price),
        amount=extra.pop("amount", amount_for(seconds, Decimal(price))),
        kind=kind,
        **extra,
    )


@pytest.fixture
def ledger(owner, make_actor, catalog):
    """October for the owner's tenant: an instance (tagged), a volume, a bucket, a reversal and a row of a
    resource that no longer exists; rows just outside the range and another tenant's row in it."""
    tenant = owner.tenant
    trainer = make_instance(tenant, created_by=owner.user, name="trainer")
    volume = volume_row(tenant, name="datasets")
    bucket = bucket_row(tenant, name="checkpoints")
    first = row(tenant, str(trainer.pk), at(2), tags={"team": "vision", "project": "detr"})
    row(tenant, str(trainer.pk), at(2, 0, 1), seconds=45)
    row(
        tenant,
        str(volume.pk),
        at(3, 10),
        seconds=3600,
        price="0.0020",
        resource_type="volume",
        meter="volume_gib_seconds:ssd",
    )
    row(tenant, str(bucket.pk), at(4), seconds=3600, price="0.0001", resource_type="bucket", meter="bucket")
    row(
        tenant,
        str(trainer.pk),
        at(2),
        id=f"reversal:{first.pk}",
        kind="reversal",
        reverses=first,
        quantity_seconds=-60,  # the same minute, taken back
        amount=-first.amount,
    )
    row(tenant, "gone-instance", at(31, 23, 59))
    row(tenant, str(trainer.pk), at(30, 23, 59, month=9))  # before from
    row(tenant, str(trainer.pk), at(1, month=11))  # at to: excluded
    stranger = make_actor(Role.OWNER)
    row(stranger.tenant, "theirs", at(5))
    return {"trainer": trainer, "volume": volume, "bucket": bucket, "first": first}


def body(response) -> str:
    assert response.streaming, "the export must stream"
    return b"".join(response.streaming_content).decode()


def test_csv_has_every_row_of_the_range_in_time_order(owner, ledger):
    response = owner.token_client().get(owner.url(f"/billing/usage/export{OCTOBER}&format=csv"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="usage-{owner.tenant.slug}-20261001T000000Z-20261101T000000Z.csv"'
    )
    lines = list(csv.reader(io.StringIO(body(response))))
    assert lines[0] == list(exports.COLUMNS)
    rows = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    trainer, volume, bucket, first = (ledger[k] for k in ("trainer", "volume", "bucket", "first"))
    assert [(r["resource_name"], r["period_start"], r["kind"]) for r in rows] == [
        ("trainer", "2026-10-02T00:00:00Z", "usage"),
        ("trainer", "2026-10-02T00:00:00Z", "reversal"),
        ("trainer", "2026-10-02T00:01:00Z", "usage"),
        ("datasets", "2026-10-03T10:00:00Z", "usage"),
        ("checkpoints", "2026-10-04T00:00:00Z", "usage"),
        ("", "2026-10-31T23:59:00Z", "usage"),
    ]
    assert rows[0] == {
        "id": first.pk,
        "resource_type": "instance",
        "resource_id": str(trainer.pk),
        "resource_name": "trainer",
        "meter": "instance_seconds:gpu-h100x1",
        "period_start": "2026-10-02T00:00:00Z",
        "period_end": "2026-10-02T00:01:00Z",
        "quantity_seconds": "60",
        "unit_price_per_hour": "2.4900",
        "amount": "0.041500",
        "kind": "usage",
        "reverses": "",
        "tags": '{"project":"detr","team":"vision"}',
    }
    assert (rows[1]["reverses"], rows[1]["amount"], rows[1]["quantity_seconds"]) == (
        first.pk,
        "-0.041500",
        "-60",
    )
    assert (rows[2]["quantity_seconds"], rows[2]["amount"]) == ("45", "0.031125")
    assert (rows[3]["resource_id"], rows[3]["amount"]) == (str(volume.pk), "0.002000")
    assert rows[4]["resource_id"] == str(bucket.pk)
    assert "theirs" not in body(owner.token_client().get(owner.url(f"/billing/usage/export{OCTOBER}")))


def test_json_is_an_array_with_money_as_decimal_strings(owner, ledger):
    response = owner.token_client().get(owner.url(f"/billing/usage/export{OCTOBER}&format=json"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.json"')
    lines = json.loads(body(response))
    assert len(lines) == 6
    assert lines[0] == {
        "id": ledger["first"].pk,
        "resource_type": "instance",
        "resource_id": str(ledger["trainer"].pk),
        "resource_name": "trainer",
        "meter": "instance_seconds:gpu-h100x1",
        "period_start": "2026-10-02T00:00:00Z",
        "period_end": "2026-10-02T00:01:00Z",
        "quantity_seconds": 60,
        "unit_price_per_hour": "2.4900",
        "amount": "0.041500",
        "kind": "usage",
        "reverses": None,
        "tags": {"team": "vision", "project": "detr"},
    }
    assert lines[1]["reverses"] == ledger["first"].pk
    total = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    assert total == Decimal("0.031125") + Decimal("0.002000") + Decimal("0.000100") + Decimal("0.041500")


def test_the_lines_add_up_to_the_usage_reports_total(owner, ledger):
    client = owner.token_client()
    range_ = "from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z"

    lines = json.loads(body(client.get(owner.url(f"/billing/usage/export?{range_}&format=json"))))
    report = client.get(owner.url(f"/billing/usage?{range_}")).json()

    assert sum((Decimal(line["amount"]) for line in lines), Decimal(0)) == Decimal(report["total"])


def test_an_empty_range_is_a_header_or_an_empty_array(owner):
    client = owner.token_client()
    url = owner.url("/billing/usage/export?from=2020-01-01&to=2020-02-01")

    assert body(client.get(url)) == ",".join(exports.COLUMNS) + "\r\n"
    assert json.loads(body(client.get(f"{url}&format=json"))) == []


def test_without_a_range_it_is_this_month_so_far(owner):
    response = owner.token_client().get(owner.url("/billing/usage/export"))

    assert response.status_code == 200
    first_of_month = datetime.now(UTC).strftime("%Y%m01T000000Z")
    assert f"usage-{owner.tenant.slug}-{first_of_month}-" in response["Content-Disposition"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=", "from"),
        ("to=", "to"),
        ("from=yesterday", "from"),
        ("from=2026-10-31&to=2026-10-01", "to"),
        ("from=2026-10-01&to=2026-10-01", "to"),
        ("from=2025-01-01&to=2026-03-01", "to"),  # more than 400 days
        ("format=xlsx", "format"),
        ("format=", "format"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(owner, query, field):
    response = owner.token_client().get(owner.url(f"/billing/usage/export?{query}"))

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert list(response.json()["error"]["fields"]) == [field]


def test_an_accept_header_does_not_change_the_answer(owner, ledger):
    client = owner.token_client()
    url = owner.url(f"/billing/usage/export{OCTOBER}&format=json")

    assert client.get(url, HTTP_ACCEPT="text/csv").status_code == 200
    refused = client.get(owner.url("/billing/usage/export?format=xlsx"), HTTP_ACCEPT="text/csv")
    assert refused.status_code == 400 and refused.json()["error"]["fields"] == {
        "format": ['"xlsx" is not a valid choice.']
    }


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.BILLING, 200), (Role.MEMBER, 403), (Role.VIEWER, 403)],
)
def test_billing_read_is_needed(make_actor, owner, role, status):
    actor = make_actor(role, tenant=owner.tenant)

    for client in (actor.token_client(), actor.session_client()):
        response = client.get(actor.url("/billing/usage/export"))
        assert response.status_code == status
        if status == 403:
            assert response.json()["error"]["code"] == "role_forbidden"


def test_another_tenant_is_a_404(owner, make_actor, ledger):
    stranger = make_actor(Role.OWNER)

    response = stranger.token_client().get(owner.url(f"/billing/usage/export{OCTOBER}"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- streaming --------------------------------------------------------------------------------------------


def test_the_export_streams_a_chunk_at_a_time(owner, ledger):
    lines = exports.usage_lines(tenant=owner.tenant, start=at(1), end=at(1, month=11), chunk_rows=2)

    pieces = list(exports.csv_chunks(lines, chunk_rows=2))

    assert len(pieces) == 1 + 3  # the header, then 6 rows two by two
    assert all(piece.count("\r\n") == 2 for piece in pieces[1:])


def test_rows_are_read_through_a_server_side_cursor_that_is_not_materialized(owner, ledger):
    lines = exports.usage_lines(tenant=owner.tenant, start=at(1), end=at(1, month=11), chunk_rows=2)
    first = next(lines)  # one chunk read; the rest still waits in PostgreSQL

    with connection.cursor() as cursor:
        cursor.execute("SELECT is_holdable, statement FROM pg_cursors")
        open_cursors = cursor.fetchall()
    rest = list(lines)

    # A cursor of its own, in a transaction: a WITH HOLD cursor (what Django declares outside one) would
    # have made PostgreSQL compute the whole result before the first row.
    assert [(holdable, "billing_usagerecord" in sql) for holdable, sql in open_cursors] == [(False, True)]
    assert len([first, *rest]) == 6


def test_names_cost_a_query_per_kind_of_resource_not_per_row(owner, catalog):
    tenant = owner.tenant
    one = make_instance(tenant, created_by=owner.user, name="one")
    row(tenant, str(one.pk), at(2))
    with CaptureQueriesContext(connection) as few:
        assert len(list(exports.usage_lines(tenant=tenant, start=at(1), end=at(1, month=11)))) == 1

    for index in range(8):
        instance = make_instance(tenant, created_by=owner.user, name=f"node-{index}")
        for minute in range(5):
            row(tenant, str(instance.pk), at(3, index, minute))
    with CaptureQueriesContext(connection) as many:
        lines = list(exports.usage_lines(tenant=tenant, start=at(1), end=at(1, month=11)))

    assert len(lines) == 41
    assert {line["resource_name"] for line in lines} == {"one"} | {f"node-{i}" for i in range(8)}
    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_name_that_looks_like_a_formula_is_quoted_in_csv(owner, catalog):
    volume = volume_row(owner.tenant, name="=cmd")
    row(owner.tenant, str(volume.pk), at(3), resource_type="volume", meter="volume_gib_seconds:ssd")

    text = body(owner.token_client().get(owner.url(f"/billing/usage/export{OCTOBER}")))
    data = json.loads(
        body(owner.token_client().get(owner.url(f"/billing/usage/export{OCTOBER}&format=json")))
    )

    assert ",'=cmd," in text
    assert data[0]["resource_name"] == "=cmd"  # JSON is data, not a spreadsheet: the name as it is
