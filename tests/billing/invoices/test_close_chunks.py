"""The set-based close: chunks of tenants per transaction, one aggregation, numbers and audit rows in bulk,
invoice_finalized on commit of each chunk, and a failing chunk retried tenant by tenant."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import AuditEvent
from apps.billing.invoices import closing, services
from apps.billing.invoices.models import CloseSnapshot, Invoice, PeriodClose
from apps.billing.invoices.signals import invoice_finalized
from tests.billing.invoices.helpers import OCTOBER, at, write_usage
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def tenants_with_usage(count: int, prefix: str = "t") -> list:
    tenants = [TenantFactory(slug=f"{prefix}-{i:02d}", credit=0) for i in range(count)]
    for i, tenant in enumerate(tenants):
        write_usage(tenant, instance_type="gpu-h100x1", start=at(2 + i), seconds=3600 + i, price="2.4900")
        write_usage(tenant, instance_type="cpu-4x", start=at(3), seconds=1800, price="0.1200")
    return tenants


@pytest.fixture
def sent():
    batches: list[list] = []

    def receiver(sender, invoice_ids, **kwargs):
        batches.append(list(invoice_ids))

    invoice_finalized.connect(receiver, dispatch_uid="test-close-chunks")
    yield batches
    invoice_finalized.disconnect(dispatch_uid="test-close-chunks")


def test_chunks_invoice_every_tenant_numbered_in_order_audited_and_announced_per_chunk(
    sent, django_capture_on_commit_callbacks
):
    tenants = tenants_with_usage(5)

    with django_capture_on_commit_callbacks(execute=True):
        result = services.month_close(month=OCTOBER, chunk_size=2)

    assert result.failed == {}
    assert [i.tenant.slug for i in result.invoices] == [t.slug for t in tenants]
    numbers = [int(i.number[-6:]) for i in result.invoices]
    assert all(re.fullmatch(r"GPC-2026-10-\d{6}", i.number) for i in result.invoices)
    assert numbers == list(range(numbers[0], numbers[0] + 5))
    # One batch per chunk of two, sent on commit, naming the invoices finalized in it.
    assert [len(batch) for batch in sent] == [2, 2, 1]
    assert {pk for batch in sent for pk in batch} == {i.pk for i in result.invoices}
    for tenant, invoice in zip(tenants, result.invoices, strict=True):
        assert invoice.status == "finalized" and invoice.total == invoice.subtotal
        (event,) = AuditEvent.objects.filter(tenant=tenant, action="invoice.finalized")
        assert (event.target_type, event.target_id, event.actor_label) == (
            "billing_invoices.invoice",
            str(invoice.pk),
            "system:system",
        )
        assert event.metadata == {
            "number": invoice.number,
            "month": "2026-10",
            "subtotal": str(invoice.subtotal),
            "credits_applied": "0.00",
            "total": str(invoice.total),
        }
        assert CloseSnapshot.objects.get(tenant=tenant, month=OCTOBER).invoice_id == invoice.pk
    (run,) = PeriodClose.objects.all()
    assert (run.month, run.invoices, run.failed_tenants) == (OCTOBER, 5, [])


def test_the_close_costs_the_same_queries_for_two_tenants_or_twelve():
    def count(prefix: str, n: int) -> int:
        tenants_with_usage(n, prefix)
        with CaptureQueriesContext(connection) as queries:
            invoices = services.period_close(month=OCTOBER)
        assert len([i for i in invoices if i.tenant.slug.startswith(prefix)]) == n
        return len(queries)

    few = count("few", 2)
    many = count("many", 12)  # the first close's invoices come back too, finalized: untouched

    assert many == few


def test_a_failing_tenant_is_retried_alone_and_holds_back_no_other(
    sent, monkeypatch, django_capture_on_commit_callbacks
):
    good_a, bad, good_b = tenants_with_usage(3)
    real_finalize = closing._finalize_and_audit

    def finalize_failing_for_bad(cursor, invoices, ctx):
        if any(invoice["tenant_id"] == bad.pk for invoice in invoices):
            raise RuntimeError("injected failure")
        return real_finalize(cursor, invoices, ctx)

    monkeypatch.setattr(closing, "_finalize_and_audit", finalize_failing_for_bad)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.month_close(month=OCTOBER)

    assert set(result.failed) == {bad.pk}
    assert "injected failure" in result.failed[bad.pk]
    assert [i.tenant for i in result.invoices] == [good_a, good_b]
    # The chunk was rolled back whole, then each tenant closed in its own transaction: nothing of the bad
    # tenant is left, and each good one was announced once.
    assert not Invoice.objects.filter(tenant=bad).exists()
    assert not CloseSnapshot.objects.filter(tenant=bad).exists()
    assert sorted(sent) == sorted([[result.invoices[0].pk], [result.invoices[1].pk]])
    assert PeriodClose.objects.get().failed_tenants == [str(bad.pk)]

    # Closing again (the failure gone) invoices the bad tenant and leaves the others as they were.
    monkeypatch.setattr(closing, "_finalize_and_audit", real_finalize)
    before = {i.pk: (i.number, i.total) for i in result.invoices}
    again = services.month_close(month=OCTOBER)

    assert again.failed == {}
    assert [i.tenant for i in again.invoices] == [good_a, bad, good_b]
    assert {i.pk: (i.number, i.total) for i in again.invoices if i.pk in before} == before
    assert AuditEvent.objects.filter(action="invoice.finalized").count() == 3


def test_a_single_tenant_close_raises_what_failed(monkeypatch):
    (tenant,) = tenants_with_usage(1)
    monkeypatch.setattr(closing, "_finalize_and_audit", lambda cursor, invoices, ctx: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        services.invoice_close(tenant=tenant, month=OCTOBER)
    assert not Invoice.objects.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-10_000_000, max_value=10_000_000),
            st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999.9999"), places=4),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_sql_rounding_is_line_amount(pairs):
    """The close rates lines in SQL; it must be services.line_amount exactly, ties and negatives included."""
    pairs = [*pairs, (500, Decimal("0.0360")), (-500, Decimal("0.0360")), (1, Decimal("18.0000"))]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT round(s * p / 3600, 2) FROM unnest(%s::bigint[], %s::numeric[]) AS v(s, p)",
            [[s for s, _ in pairs], [p for _, p in pairs]],
        )
        got = [row[0] for row in cursor.fetchall()]
    assert got == [services.line_amount(s, p) for s, p in pairs]
    # 500 s at 0.0360/h is exactly 0.005: half up, away from zero both ways.
    assert got[-3:-1] == [Decimal("0.01"), Decimal("-0.01")]
    assert Decimal("-0.005").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) == Decimal("-0.01")


def test_the_command_names_the_tenants_it_could_not_invoice_and_fails(monkeypatch):
    from io import StringIO

    from django.core.management import CommandError, call_command

    good, bad = tenants_with_usage(2)
    real_finalize = closing._finalize_and_audit

    def finalize_failing_for_bad(cursor, invoices, ctx):
        if any(invoice["tenant_id"] == bad.pk for invoice in invoices):
            raise RuntimeError("injected failure")
        return real_finalize(cursor, invoices, ctx)

    monkeypatch.setattr(closing, "_finalize_and_audit", finalize_failing_for_bad)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 tenant"):
        call_command("close_billing_period", "--month", "2026-10", stdout=out, stderr=err)

    assert f"not invoiced: {bad.slug}: RuntimeError: injected failure" in err.getvalue()
    assert Invoice.objects.get(tenant=good).number in out.getvalue()
