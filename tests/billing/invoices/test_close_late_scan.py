"""The close finds rows that reached the ledger after their month was closed without reading the month it
closes again (aggregation.LATE_ROWS): those created long after their period ended through a partial index
that holds only them, and on-time rows of the last hour before the previous close by their period's end.
Both kinds must become adjustment lines."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from apps.billing.invoices import services
from apps.billing.models import LATE_ROW_LAG
from tests.billing.invoices.helpers import at, write_usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

SEPTEMBER, OCTOBER, NOVEMBER = (date(2026, m, 1) for m in (9, 10, 11))
METER = "instance_seconds:gpu-h100x1"


def use(tenant, start, seconds, created_at=None, price="2.0000"):
    return write_usage(
        tenant, instance_type="gpu-h100x1", start=start, seconds=seconds, price=price, created_at=created_at
    )


def adjustments(invoice):
    return [
        (line.usage_month, line.quantity_seconds, line.amount)
        for line in invoice.lines.filter(kind="adjustment").order_by("position")
    ]


def test_rows_arriving_long_after_their_period_and_just_after_the_close_are_both_billed():
    tenant = TenantFactory(credit=0)
    october_starts = at(1, month=OCTOBER)
    use(tenant, at(3, 10, month=SEPTEMBER), 3600, at(3, 11, month=SEPTEMBER))
    services.period_close(month=SEPTEMBER, now=october_starts + timedelta(minutes=30))
    # September's last half hour, metered ten minutes after the close ran: on time (within LATE_ROW_LAG of
    # its period's end), yet after the close read the month.
    just_after = use(
        tenant, october_starts - timedelta(minutes=30), 1800, october_starts + timedelta(minutes=40)
    )
    # A quarter hour of September at another price (a line of its own, so each late row is found on its own
    # account) that reached the ledger three days into October (an outage).
    long_after = use(tenant, at(20, 10, month=SEPTEMBER), 900, october_starts + timedelta(days=3), "4.0000")
    use(tenant, at(3, 10, month=OCTOBER), 3600, at(3, 11, month=OCTOBER))
    assert just_after[0].created_at - just_after[0].period.upper <= LATE_ROW_LAG
    assert long_after[0].created_at - long_after[0].period.upper > LATE_ROW_LAG

    (october,) = services.period_close(month=OCTOBER, now=at(1, 0, 30, month=NOVEMBER))

    assert sorted(adjustments(october)) == [
        (SEPTEMBER, 900, Decimal("1.00")),
        (SEPTEMBER, 1800, Decimal("1.00")),
    ]
    assert october.total == Decimal("4.00")


def test_a_row_of_the_closed_month_written_before_the_close_is_not_billed_again():
    tenant = TenantFactory(credit=0)
    october_starts = at(1, month=OCTOBER)
    use(tenant, october_starts - timedelta(minutes=30), 1800, october_starts + timedelta(minutes=1))
    (september,) = services.period_close(month=SEPTEMBER, now=october_starts + timedelta(minutes=30))
    use(tenant, at(3, 10, month=OCTOBER), 3600, at(3, 11, month=OCTOBER))

    (october,) = services.period_close(month=OCTOBER, now=at(1, 0, 30, month=NOVEMBER))

    assert september.total == Decimal("1.00")
    assert adjustments(october) == []
