"""The close's one read of the month runs with BILLING_CLOSE_WORK_MEM (its grouping a hash in memory, not a
sort spilled to disk) and the close without JIT, and the connection's own settings come back after it."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection

from apps.billing.invoices import services
from tests.billing.invoices.helpers import at, write_usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

OCTOBER, NOVEMBER = date(2026, 10, 1), date(2026, 11, 1)


def show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def test_the_month_is_read_with_the_close_settings_and_the_session_values_are_restored(settings):
    settings.BILLING_CLOSE_WORK_MEM = "7MB"
    write_usage(
        TenantFactory(credit=0), instance_type="gpu-h100x1", start=at(3, 10), seconds=3600, price="2.0"
    )
    with connection.cursor() as cursor:
        cursor.execute("SET work_mem = '3MB'")
        cursor.execute("SET jit = on")
    seen: list[tuple[str, str, str]] = []

    def spy(execute, sql, params, many, context):
        if "CREATE TEMP TABLE billing_close_usage" in sql and not seen:
            seen.append(("", "", ""))  # the SHOWs below goes through this wrapper too
            seen[0] = (show("work_mem"), show("jit"), show("enable_sort"))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        (invoice,) = services.period_close(month=OCTOBER, now=at(1, 0, 30, month=NOVEMBER))

    assert invoice.total > 0
    assert seen == [("7MB", "off", "off")]
    assert (show("work_mem"), show("jit"), show("enable_sort")) == ("3MB", "on", "on")
