"""Late rows: ledger rows that reach the ledger after their month was invoiced are billed once, on the next
invoice, as an adjustment line for their month: never lost, never billed twice. A late reversal is a
negative adjustment; an invoice whose adjustments would take it below zero carries the rest as credit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.billing.invoices import services
from apps.billing.invoices.models import CloseSnapshot, Invoice
from apps.billing.models import CreditGrant, UsageRecord
from tests.billing.invoices.helpers import at, write_usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

AUGUST, SEPTEMBER, OCTOBER, NOVEMBER = (date(2026, m, 1) for m in (8, 9, 10, 11))


@pytest.fixture
def tenant():
    return TenantFactory(credit=0)


def use(tenant, month, day, seconds, price="2.0000", window=3600):
    return write_usage(
        tenant,
        instance_type="gpu-h100x1",
        start=at(day, 10, month=month),
        seconds=seconds,
        price=price,
        window=window,
    )


def reversal_of(row: UsageRecord) -> UsageRecord:
    return UsageRecord.objects.create(
        id=f"reversal:{row.id}",
        tenant=row.tenant,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        meter=row.meter,
        period=row.period,
        quantity_seconds=-row.quantity_seconds,
        unit_price_per_hour=row.unit_price_per_hour,
        amount=-row.amount,
        kind="reversal",
        reverses=row,
    )


def lines(invoice):
    return [
        (line.kind, line.usage_month, line.meter, line.quantity_seconds, line.amount)
        for line in invoice.lines.order_by("position")
    ]


def money(invoice):
    return invoice.subtotal, invoice.credits_applied, invoice.total


def test_a_late_row_is_billed_once_on_the_next_invoice(tenant):
    use(tenant, SEPTEMBER, 3, 3600)
    services.period_close(month=SEPTEMBER)
    use(tenant, SEPTEMBER, 29, 1800)  # reaches the ledger after September was invoiced
    use(tenant, OCTOBER, 3, 3600)

    (october,) = services.period_close(month=OCTOBER)
    services.period_close(month=OCTOBER)  # again: untouched
    (november,) = services.period_close(month=NOVEMBER, tenant=tenant)

    meter = "instance_seconds:gpu-h100x1"
    assert lines(october) == [
        ("usage", OCTOBER, meter, 3600, Decimal("2.00")),
        ("adjustment", SEPTEMBER, meter, 1800, Decimal("1.00")),
    ]
    assert october.lines.get(kind="adjustment").description == (
        "gpu-h100x1 instance hours (adjustment for 2026-09)"
    )
    assert money(october) == (Decimal("3.00"), Decimal("0.00"), Decimal("3.00"))
    assert lines(november) == []
    assert Invoice.objects.filter(tenant=tenant).count() == 3


def test_the_adjustment_is_rated_on_the_month_total_so_rounding_never_drifts(tenant):
    # 500 s at 0.0360/h is 0.005 (0.01 billed); 500 more late make 1000 s = 0.01: nothing more to bill, and
    # the seconds are still invoiced (the line's amount is the month's total rated once, less what was
    # billed).
    use(tenant, SEPTEMBER, 3, 500, price="0.0360")
    (september,) = services.period_close(month=SEPTEMBER)
    use(tenant, SEPTEMBER, 20, 500, price="0.0360")
    use(tenant, OCTOBER, 3, 60, price="1.0000")

    (october,) = services.period_close(month=OCTOBER)

    assert september.subtotal == Decimal("0.01")
    adjustment = october.lines.get(kind="adjustment")
    assert (adjustment.quantity_seconds, adjustment.amount) == (500, Decimal("0.00"))


def test_a_late_reversal_is_a_negative_adjustment(tenant):
    (row,) = use(tenant, SEPTEMBER, 3, 3600)
    use(tenant, SEPTEMBER, 4, 7200)
    services.period_close(month=SEPTEMBER)
    reversal_of(row)  # September's first hour was not usage after all
    use(tenant, OCTOBER, 3, 3 * 3600)

    (october,) = services.period_close(month=OCTOBER)

    assert lines(october) == [
        ("usage", OCTOBER, "instance_seconds:gpu-h100x1", 10800, Decimal("6.00")),
        ("adjustment", SEPTEMBER, "instance_seconds:gpu-h100x1", -3600, Decimal("-2.00")),
    ]
    assert money(october) == (Decimal("4.00"), Decimal("0.00"), Decimal("4.00"))


def test_a_reversal_larger_than_the_invoice_carries_the_rest_as_credit_to_the_next_one(tenant):
    """Postpaid, no credit: September was billed 20.00 in cash. Reversed in October, when only 2.00 was used:
    October's invoice is zero and carries 18.00 to November, whose 5.00 it pays in full, carrying 13.00 on."""
    (row,) = use(tenant, SEPTEMBER, 3, 36000, window=36000)
    (september,) = services.period_close(month=SEPTEMBER)
    reversal_of(row)
    use(tenant, OCTOBER, 3, 3600)
    use(tenant, NOVEMBER, 3, 9000)

    (october,) = services.period_close(month=OCTOBER)
    (november,) = services.period_close(month=NOVEMBER)

    assert money(september) == (Decimal("20.00"), Decimal("0.00"), Decimal("20.00"))
    assert lines(october) == [
        ("usage", OCTOBER, "instance_seconds:gpu-h100x1", 3600, Decimal("2.00")),
        ("adjustment", SEPTEMBER, "instance_seconds:gpu-h100x1", -36000, Decimal("-20.00")),
        ("credit", OCTOBER, "credit_carried", 0, Decimal("18.00")),
    ]
    assert money(october) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    assert CloseSnapshot.objects.get(invoice=october).carried_credit == Decimal("18.00")
    assert lines(november) == [
        ("usage", NOVEMBER, "instance_seconds:gpu-h100x1", 9000, Decimal("5.00")),
        ("credit", OCTOBER, "credit_carried", 0, Decimal("-18.00")),
        ("credit", NOVEMBER, "credit_carried", 0, Decimal("13.00")),
    ]
    assert november.lines.get(amount=Decimal("-18.00")).description == (
        f"Credit carried from invoice {october.number}"
    )
    assert money(november) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    # Closing November again, or the tenant alone, takes nothing off twice.
    assert services.invoice_close(tenant=tenant, month=NOVEMBER).pk == november.pk
    assert november.lines.count() == 3


def test_a_reversal_of_usage_that_credit_paid_goes_back_to_the_wallet_not_to_the_next_invoice(tenant):
    CreditGrant.objects.create(
        tenant=tenant, kind="paid", amount=Decimal("50.00"), created_at=at(1, month=AUGUST)
    )
    (row,) = use(tenant, SEPTEMBER, 3, 36000, window=36000)  # 20.00, paid with credit
    (september,) = services.period_close(month=SEPTEMBER)
    reversal_of(row)  # the wallet gets its 20.00 back
    use(tenant, OCTOBER, 3, 3600)  # 2.00

    (october,) = services.period_close(month=OCTOBER)

    assert money(september) == (Decimal("20.00"), Decimal("20.00"), Decimal("0.00"))
    assert lines(october)[-1] == ("credit", OCTOBER, "credit_returned", 0, Decimal("18.00"))
    assert money(october) == (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"))
    assert CloseSnapshot.objects.get(invoice=october).carried_credit == Decimal("0.00")


def test_a_tenant_without_usage_gets_an_invoice_of_its_late_rows_and_rows_of_unclosed_months_wait(tenant):
    other = TenantFactory(credit=0)
    use(tenant, SEPTEMBER, 3, 3600)
    use(other, OCTOBER, 3, 3600)
    services.period_close(month=SEPTEMBER)
    use(tenant, SEPTEMBER, 25, 3600)  # late, for a closed month; the tenant used nothing in October
    idle = TenantFactory(credit=0)
    use(
        idle, date(2026, 7, 1), 3, 3600
    )  # July was never closed: not an adjustment, it waits for July's close

    invoices = services.period_close(month=OCTOBER)

    assert {i.tenant for i in invoices} == {tenant, other}
    late = next(i for i in invoices if i.tenant == tenant)
    assert lines(late) == [("adjustment", SEPTEMBER, "instance_seconds:gpu-h100x1", 3600, Decimal("2.00"))]
    assert not Invoice.objects.filter(tenant=idle).exists()
