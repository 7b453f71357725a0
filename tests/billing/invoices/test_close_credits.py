"""Credits without history: each close stores the wallet at the end of its month, and the next close carries
on from it with the month's grants, reversals and usage only. It must equal the computation from the whole
history (credits.wallet_at) month after month, through grants, expiries, refunds and a dispute won."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db.models import Sum

from apps.billing.invoices import credits, periods, services
from apps.billing.invoices.models import CloseSnapshot, Invoice
from apps.billing.models import CreditGrant, CreditReversal, UsageRecord
from apps.billing.snapshots import state_from_json
from tests.billing.invoices.helpers import at, write_usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

MONTHS = [date(2026, m, 1) for m in (3, 4, 5, 6, 7, 8)]
MARCH, APRIL, MAY, JUNE, JULY, AUGUST = MONTHS
SEPTEMBER, OCTOBER = date(2026, 9, 1), date(2026, 10, 1)


def grant(tenant, amount, *, granted, expires=None, kind="promotional"):
    return CreditGrant.objects.create(
        tenant=tenant, kind=kind, amount=Decimal(amount), created_at=granted, expires_at=expires
    )


def reverse(g, amount, *, when, source):
    CreditReversal.objects.create(
        tenant=g.tenant, grant=g, cause="refund", source_id=source, sequence=1, amount=Decimal(amount),
        created_at=when,
    )  # fmt: skip


def use(tenant, month, day, hours, price="1.5000", instance_type="gpu-h100x1"):
    write_usage(
        tenant,
        instance_type=instance_type,
        start=at(day, 10, month=month),
        seconds=int(hours * 3600),
        price=price,
    )


def month_exact(tenant, month):
    start, end = periods.bounds(month)
    rows = UsageRecord.objects.filter(
        tenant=tenant, period__startswith__gte=start, period__startswith__lt=end
    )
    return rows.aggregate(s=Sum("amount"))["s"] or Decimal("0")


def assert_matches_full_history(tenant, month, invoice):
    end = periods.bounds(month)[1]
    snapshot = CloseSnapshot.objects.get(tenant=tenant, month=month)
    full = credits.wallet_at(tenant=tenant, at=end)
    assert state_from_json(snapshot.state).drawdown() == full, month
    reference = credits.credits_for_month(
        tenant=tenant, period_end=end, month_usage=month_exact(tenant, month), subtotal=invoice.subtotal
    )
    assert invoice.credits_applied == reference, month
    return snapshot


@pytest.fixture
def history():
    """Six months of a tenant's wallet: a promotion that expires half used, a paid top-up, a refund of part
    of it, a dispute won back, months in debt and a top-up that pays the debt."""
    tenant = TenantFactory(credit=0)
    promo = grant(tenant, "10.00", granted=at(1, month=MARCH), expires=at(15, month=APRIL))
    paid = grant(tenant, "20.00", granted=at(10, month=MARCH), kind="paid")
    use(tenant, MARCH, 5, 4)  # 6.00 from the promotion
    use(tenant, MARCH, 20, 2)  # 3.00 from the promotion (1.00 left)
    use(tenant, APRIL, 20, 4)  # after the promotion expired: 6.00 from the paid grant
    reverse(paid, "5.00", when=at(12, month=APRIL), source="re_1")
    reverse(paid, "-2.00", when=at(3, month=MAY), source="dp_1")  # a dispute won: 2.00 back
    grant(tenant, "8.00", granted=at(15, month=MAY), expires=at(10, month=JUNE))
    use(tenant, MAY, 16, 2, price="2.0000")
    use(tenant, JUNE, 2, 30, price="1.0000")  # 30.00: more than is left, into debt
    use(tenant, JULY, 2, 10, price="1.0000")
    grant(tenant, "100.00", granted=at(20, month=JULY), kind="paid")  # pays the debt first
    use(tenant, JULY, 25, 3, price="2.0000", instance_type="cpu-4x")
    use(tenant, AUGUST, 1, 5)
    promo.refresh_from_db()
    return tenant


def test_each_close_carries_the_wallet_on_and_equals_the_whole_history(history):
    for month in MONTHS:
        invoice = services.invoice_close(tenant=history, month=month)
        snapshot = assert_matches_full_history(history, month, invoice)
        # Only the first close reads the whole history; the others carry on from the previous snapshot.
        assert snapshot.rebuilt == (month == MARCH), month

    june = Invoice.objects.get(tenant=history, month=JUNE)
    july = Invoice.objects.get(tenant=history, month=JULY)
    assert june.credits_applied < june.subtotal  # the debt month: credit ran out
    assert july.credits_applied == july.subtotal  # the top-up paid July


def test_a_late_row_makes_the_next_close_read_the_whole_history_once(history):
    for month in MONTHS:
        services.invoice_close(tenant=history, month=month)
    # A row of June (an outage: metered weeks later) reaches the ledger after June and August were closed.
    use(history, JUNE, 28, 1, price="1.0000")

    september = services.invoice_close(tenant=history, month=SEPTEMBER)
    october = services.invoice_close(tenant=history, month=OCTOBER)

    first = assert_matches_full_history(history, SEPTEMBER, september)
    second = assert_matches_full_history(history, OCTOBER, october)
    assert (first.rebuilt, second.rebuilt) == (True, False)
    # The late hour is billed once, on September's invoice, as June's.
    (line,) = september.lines.filter(kind="adjustment")
    assert (line.usage_month, line.quantity_seconds, line.amount) == (JUNE, 3600, Decimal("1.00"))
    assert not october.lines.exists()
