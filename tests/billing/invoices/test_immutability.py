"""A finalized invoice never changes: the models refuse, and so does the database for any client."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from apps.billing.invoices.models import Invoice, InvoiceFinalized, InvoiceLine, InvoiceStatus
from tests.billing.invoices.helpers import OCTOBER, at, make_invoice
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    return make_invoice(TenantFactory(credit=0))


def _reloaded(invoice):
    return Invoice.objects.get(pk=invoice.pk)


def test_model_save_and_delete_of_a_finalized_invoice_are_refused(invoice):
    before = (invoice.subtotal, invoice.total, invoice.number)
    invoice.total = Decimal("0.00")
    invoice.subtotal = Decimal("0.00")

    with pytest.raises(InvoiceFinalized):
        invoice.save()
    with pytest.raises(InvoiceFinalized):
        invoice.delete()

    stored = _reloaded(invoice)
    assert (stored.subtotal, stored.total, stored.number) == before


def test_model_save_create_and_delete_of_lines_of_a_finalized_invoice_are_refused(invoice):
    line = invoice.lines.get()
    line.amount = Decimal("0.01")

    with pytest.raises(InvoiceFinalized):
        line.save()
    with pytest.raises(InvoiceFinalized):
        line.delete()
    with pytest.raises(InvoiceFinalized):
        InvoiceLine(
            invoice=invoice,
            position=2,
            meter="m",
            description="d",
            quantity_seconds=1,
            unit_price_per_hour=Decimal("1"),
            amount=Decimal("1.00"),
        ).save()

    assert invoice.lines.get().amount == Decimal("3.74")  # 5400 s at 2.49/h = 3.735 -> 3.74


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE billing_invoices_invoice SET total = 0, subtotal = 0 WHERE id = %s",
        "UPDATE billing_invoices_invoice SET credits_applied = credits_applied WHERE id = %s AND false",
        "UPDATE billing_invoices_invoice SET number = 'GPC-0000-00-000000' WHERE id = %s",
        "UPDATE billing_invoices_invoice SET status = 'draft' WHERE id = %s",
        "DELETE FROM billing_invoices_invoice WHERE id = %s",
        "UPDATE billing_invoices_invoiceline SET amount = 0 WHERE invoice_id = %s",
        "UPDATE billing_invoices_invoiceline SET quantity_seconds = 1 WHERE invoice_id = %s",
        "DELETE FROM billing_invoices_invoiceline WHERE invoice_id = %s",
        "INSERT INTO billing_invoices_invoiceline (invoice_id, position, meter, description, "
        "quantity_seconds, unit_price_per_hour, amount) VALUES (%s, 9, 'm', 'd', 1, 1, 1)",
    ],
    ids=[
        "update totals",
        "no-op (matches nothing)",
        "update number",
        "back to draft",
        "delete invoice",
        "update line amount",
        "update line seconds",
        "delete lines",
        "insert line",
    ],
)
def test_sql_changes_of_a_finalized_invoice_are_refused_by_the_database(invoice, sql):
    matches_nothing = "AND false" in sql
    if matches_nothing:
        with connection.cursor() as cursor:
            cursor.execute(sql, [invoice.pk])  # the trigger fires per row: no row, no refusal
        return
    with pytest.raises(DatabaseError, match="finalized"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [invoice.pk])

    stored = _reloaded(invoice)
    assert stored.status == InvoiceStatus.FINALIZED
    assert (stored.subtotal, stored.total) == (Decimal("3.74"), Decimal("3.74"))
    assert [(li.quantity_seconds, li.amount) for li in stored.lines.all()] == [(5400, Decimal("3.74"))]


def test_queryset_update_and_delete_bypassing_save_are_refused_too(invoice):
    with pytest.raises(DatabaseError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("0.00"), subtotal=Decimal("0.00"))
    with pytest.raises(DatabaseError), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice).update(amount=Decimal("0.00"))
    with pytest.raises(DatabaseError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).delete()

    assert _reloaded(invoice).total == Decimal("3.74")


def test_a_draft_may_change():
    tenant = TenantFactory()
    draft = Invoice.objects.create(tenant=tenant, month=OCTOBER, period_start=at(1), period_end=at(31))
    line = draft.lines.create(
        position=1,
        meter="m",
        description="d",
        quantity_seconds=1,
        unit_price_per_hour=Decimal("1"),
        amount=Decimal("1.00"),
    )

    line.amount = Decimal("2.00")
    line.save()
    draft.subtotal = draft.total = Decimal("2.00")
    draft.save()
    Invoice.objects.filter(pk=draft.pk).update(currency="EUR")
    line.delete()
    draft.delete()

    assert not Invoice.objects.filter(pk=draft.pk).exists()
