"""Closing a month: lines from the ledger per meter and price, rounding once per line, credits,
idempotence."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from apps.audit.models import AuditEvent
from apps.billing.invoices import services, tasks
from apps.billing.invoices.models import Invoice, InvoiceStatus
from apps.billing.models import CreditGrant, CreditReversal
from apps.core.errors import InvalidInput
from tests.billing.invoices.helpers import OCTOBER, at, write_usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

NOVEMBER = date(2026, 11, 1)
SEPTEMBER = date(2026, 9, 1)


@pytest.fixture
def tenant():
    return TenantFactory(credit=0)


def lines_of(invoice):
    return [
        (line.meter, line.quantity_seconds, line.unit_price_per_hour, line.amount)
        for line in invoice.lines.order_by("position")
    ]


def test_two_types_and_a_price_change_give_a_line_per_type_and_price(tenant, instance_types):
    # H100: 10 h at 2.49 before the change on the 15th, then 5 h 30 min 15 s at 2.99 (two instances).
    write_usage(tenant, instance_type="gpu-h100x1", start=at(3, 8), seconds=36000, price="2.4900")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(20, 9), seconds=12000, price="2.9900")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(21, 9), seconds=7815, price="2.9900")
    # A100: 3 h 20 min at one price all month.
    write_usage(tenant, instance_type="gpu-a100x1", start=at(10, 1), seconds=12000, price="1.2900")

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert lines_of(invoice) == [
        ("instance_seconds:gpu-a100x1", 12000, Decimal("1.2900"), Decimal("4.30")),
        ("instance_seconds:gpu-h100x1", 36000, Decimal("2.4900"), Decimal("24.90")),
        # 19815 s * 2.99 / 3600 = 16.45745833... -> 16.46
        ("instance_seconds:gpu-h100x1", 19815, Decimal("2.9900"), Decimal("16.46")),
    ]
    h100_new = invoice.lines.get(unit_price_per_hour=Decimal("2.9900"))
    assert h100_new.quantity_hours == Decimal("5.504167")  # shown with 6 places; the seconds stay exact
    assert h100_new.description == "gpu-h100x1 (1x H100 80GB) instance hours"
    assert invoice.subtotal == Decimal("45.66")
    assert invoice.credits_applied == Decimal("0.00")
    assert invoice.total == Decimal("45.66")
    assert invoice.status == InvoiceStatus.FINALIZED
    assert invoice.period_start == datetime(2026, 10, 1, tzinfo=UTC)
    assert invoice.period_end == datetime(2026, 11, 1, tzinfo=UTC)


def test_only_rows_of_the_month_are_billed(tenant):
    write_usage(
        tenant, instance_type="gpu-h100x1", start=at(30, 23, 59, month=SEPTEMBER), seconds=60, price="1"
    )
    write_usage(tenant, instance_type="gpu-h100x1", start=at(1, 0, 0), seconds=60, price="1")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(31, 23, 59), seconds=60, price="1")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(1, 0, 0, month=NOVEMBER), seconds=60, price="1")
    write_usage(TenantFactory(), instance_type="gpu-h100x1", start=at(5), seconds=3600, price="1")

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert lines_of(invoice) == [("instance_seconds:gpu-h100x1", 120, Decimal("1.0000"), Decimal("0.03"))]


def test_amounts_are_rounded_to_cents_half_up_once_per_line(tenant):
    # 500 s at 0.0360/h is exactly 0.005: half up gives 0.01 (half-even would give 0.00).
    write_usage(tenant, instance_type="cpu-4x", start=at(2), seconds=500, price="0.0360")
    # 0.005 again on another meter: each line rounds on its own, so 0.01 + 0.01, not round(0.010) = 0.01.
    write_usage(tenant, instance_type="cpu-16x", start=at(2), seconds=500, price="0.0360")
    # 3601 one-second rows at 1.00/h: the ledger's 6-place amounts sum to 3601 * 0.000278 = 1.001078, but
    # the line is rated from its exact seconds: 3601 / 3600 = 1.000277... -> 1.00.
    write_usage(tenant, instance_type="gpu-h100x1", start=at(3), seconds=3601, price="1.0000", window=1)

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert [line[3] for line in lines_of(invoice)] == [Decimal("0.01"), Decimal("0.01"), Decimal("1.00")]
    assert invoice.subtotal == Decimal("1.02")


def test_reversed_usage_is_netted_and_a_fully_reversed_meter_has_no_line(tenant):
    from apps.billing.models import UsageRecord

    (kept,) = write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")
    (gone,) = write_usage(tenant, instance_type="gpu-a100x1", start=at(2), seconds=3600, price="1.0000")
    UsageRecord.objects.create(
        id=f"reversal:{gone.id}",
        tenant=tenant,
        resource_type=gone.resource_type,
        resource_id=gone.resource_id,
        meter=gone.meter,
        period=gone.period,
        quantity_seconds=-3600,
        unit_price_per_hour=gone.unit_price_per_hour,
        amount=-gone.amount,
        kind="reversal",
        reverses=gone,
    )

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert lines_of(invoice) == [("instance_seconds:gpu-h100x1", 3600, Decimal("2.0000"), Decimal("2.00"))]
    assert kept.tenant_id == invoice.tenant_id


def _grant(tenant, amount, *, granted, expires=None, kind="promotional"):
    return CreditGrant.objects.create(
        tenant=tenant, kind=kind, amount=Decimal(amount), created_at=granted, expires_at=expires
    )


def test_credits_are_applied_up_to_the_subtotal(tenant):
    _grant(tenant, "30.00", granted=at(1))
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=36000, price="2.4900")  # 24.90

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert (invoice.subtotal, invoice.credits_applied, invoice.total) == (
        Decimal("24.90"),
        Decimal("24.90"),
        Decimal("0.00"),
    )


def test_credits_short_of_the_subtotal_leave_the_rest_due_and_carry_over_months(tenant):
    _grant(tenant, "30.00", granted=at(1, month=SEPTEMBER), kind="paid")
    write_usage(
        tenant, instance_type="gpu-h100x1", start=at(2, month=SEPTEMBER), seconds=3600 * 8, price="2.5"
    )
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600 * 8, price="2.5")  # 20.00

    september = services.invoice_close(tenant=tenant, month=SEPTEMBER)
    october = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert (september.subtotal, september.credits_applied, september.total) == (
        Decimal("20.00"),
        Decimal("20.00"),
        Decimal("0.00"),
    )
    # 10.00 of credit is left for October's 20.00.
    assert (october.credits_applied, october.total) == (Decimal("10.00"), Decimal("10.00"))


def test_expired_and_future_credits_are_not_applied(tenant):
    _grant(tenant, "100.00", granted=at(1, month=SEPTEMBER), expires=at(1))  # expired before any usage
    _grant(tenant, "100.00", granted=at(5, month=NOVEMBER))  # granted after the period
    _grant(tenant, "4.00", granted=at(1), expires=at(20))  # pays usage until the 20th only
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="3.0000")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(25), seconds=3600, price="3.0000")

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER, now=at(10, month=NOVEMBER))

    # 3.00 on the 2nd from the 4.00 grant; its 1.00 remainder expired on the 20th; nothing for the 25th.
    assert (invoice.subtotal, invoice.credits_applied, invoice.total) == (
        Decimal("6.00"),
        Decimal("3.00"),
        Decimal("3.00"),
    )


def test_credit_taken_back_by_a_refund_is_not_applied(tenant):
    """A 30.00 top-up refunded by 20.00 on the 3rd leaves 10.00 to pay October's 24.90 (the invoice reads the
    same wallet, reversals included); a refund after the month does not change what served it."""
    grant = _grant(tenant, "30.00", granted=at(1), kind="paid")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=36000, price="2.4900")  # 24.90
    for source, amount, when in (("re_oct", "20.00", at(3)), ("re_nov", "5.00", at(2, month=NOVEMBER))):
        CreditReversal.objects.create(
            tenant=tenant,
            grant=grant,
            cause="refund",
            source_id=source,
            sequence=1,
            amount=Decimal(amount),
            created_at=when,
        )

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER, now=at(10, month=NOVEMBER))

    assert (invoice.subtotal, invoice.credits_applied, invoice.total) == (
        Decimal("24.90"),
        Decimal("10.00"),
        Decimal("14.90"),
    )


def test_closing_again_changes_nothing(tenant):
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")

    first = services.invoice_close(tenant=tenant, month=OCTOBER)
    second = services.invoice_close(tenant=tenant, month=OCTOBER)
    services.period_close(month=OCTOBER)

    assert Invoice.objects.filter(tenant=tenant).count() == 1
    assert second.pk == first.pk and second.number == first.number
    assert lines_of(second) == lines_of(first)
    assert AuditEvent.objects.filter(tenant=tenant, action="invoice.finalized").count() == 1


def test_one_invoice_per_tenant_and_month_is_a_database_constraint(tenant):
    services.invoice_close(tenant=tenant, month=OCTOBER)

    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            tenant=tenant, month=OCTOBER, period_start=at(1), period_end=at(1, month=NOVEMBER)
        )


def test_a_draft_left_by_an_interrupted_close_is_rebuilt(tenant):
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")
    draft = Invoice.objects.create(
        tenant=tenant, month=OCTOBER, period_start=at(1), period_end=at(1, month=NOVEMBER)
    )
    draft.lines.create(
        position=1,
        meter="stale",
        description="stale",
        quantity_seconds=1,
        unit_price_per_hour=Decimal("9"),
        amount=Decimal("9.00"),
    )

    invoice = services.invoice_close(tenant=tenant, month=OCTOBER)

    assert invoice.pk == draft.pk
    assert lines_of(invoice) == [("instance_seconds:gpu-h100x1", 3600, Decimal("2.0000"), Decimal("2.00"))]


def test_numbers_come_from_a_sequence_with_the_month(tenant):
    other = TenantFactory()
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=60, price="1")
    write_usage(other, instance_type="gpu-h100x1", start=at(2), seconds=60, price="1")

    first, second = services.period_close(month=OCTOBER)

    for invoice in (first, second):
        assert re.fullmatch(r"GPC-2026-10-\d{6}", invoice.number)
    assert int(second.number[-6:]) == int(first.number[-6:]) + 1


def test_a_month_that_has_not_ended_cannot_be_closed(tenant):
    with pytest.raises(InvalidInput) as excinfo:
        services.invoice_close(tenant=tenant, month=NOVEMBER, now=at(30, 23, 59, month=NOVEMBER))
    assert excinfo.value.fields == {"month": ["The month has not ended yet."]}
    assert not Invoice.objects.exists()


def test_the_command_closes_every_tenant_with_usage_once(tenant):
    idle = TenantFactory()
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")

    out = StringIO()
    call_command("close_billing_period", "--month", "2026-10", stdout=out)
    call_command("close_billing_period", "--month", "2026-10", stdout=StringIO())

    invoice = Invoice.objects.get(tenant=tenant)
    assert (
        f"{invoice.number} {tenant.slug} 2026-10 subtotal 2.00 credits 0.00 total 2.00 USD" in out.getvalue()
    )
    assert Invoice.objects.count() == 1
    assert not Invoice.objects.filter(tenant=idle).exists()


def test_the_command_for_one_tenant_invoices_it_even_without_usage(tenant):
    write_usage(TenantFactory(), instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")

    call_command("close_billing_period", "--month", "2026-10", "--tenant", tenant.slug, stdout=StringIO())

    (invoice,) = Invoice.objects.all()
    assert invoice.tenant == tenant and invoice.total == Decimal("0.00") and not invoice.lines.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "--month"),
        (["--month", "October"], "--month"),
        (["--month", "2026-10", "--tenant", "nope"], "--tenant"),
        (["--month", "2999-01"], "has not ended"),
    ],
)
def test_the_command_refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("close_billing_period", *args, stdout=StringIO())


def test_the_periodic_task_closes_the_previous_month_on_the_first(tenant, monkeypatch):
    schedule = settings.CELERY_BEAT_SCHEDULE["close-billing-period"]
    assert schedule["task"] == "apps.billing.invoices.tasks.close_previous_month"
    assert schedule["schedule"].day_of_month == {1}
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")
    monkeypatch.setattr(tasks.timezone, "now", lambda: at(1, 0, 30, month=NOVEMBER) + timedelta(seconds=1))

    numbers = tasks.close_previous_month()
    again = tasks.close_previous_month()

    invoice = Invoice.objects.get(tenant=tenant)
    assert numbers == again == [invoice.number]
    assert invoice.month == OCTOBER


@pytest.mark.django_db(transaction=True)
def test_concurrent_closes_make_one_invoice():
    import threading

    from django.db import connection as default_connection

    tenant = TenantFactory(credit=0)
    write_usage(tenant, instance_type="gpu-h100x1", start=at(2), seconds=3600, price="2.0000")
    results: list[object] = []
    barrier = threading.Barrier(4)

    def close() -> None:
        try:
            barrier.wait()
            results.append(services.invoice_close(tenant=tenant, month=OCTOBER).number)
        except Exception as exc:
            results.append(exc)
        finally:
            default_connection.close()

    threads = [threading.Thread(target=close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    (invoice,) = Invoice.objects.filter(tenant=tenant)
    assert results == [invoice.number] * 4
    assert AuditEvent.objects.filter(tenant=tenant, action="invoice.finalized").count() == 1
