"""Collecting our invoices through Stripe (apps/billing/stripe/collection.py), against stripe-mock: a record
per finalized invoice, decided by mode and total; a postpaid invoice becomes one Stripe invoice with an item
per line and the credits, finalized to be charged automatically; idempotent, sent once across outages and
retries, never for a prepaid tenant."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing.invoices import services
from apps.billing.invoices.models import Invoice
from apps.billing.invoices.signals import invoice_finalized
from apps.billing.models import CreditGrant
from apps.billing.stripe import collection, gateway, tasks
from apps.billing.stripe.models import CollectionState, StripeInvoice
from tests.billing.invoices.helpers import OCTOBER, at, write_usage
from tests.billing.stripe.conftest import postpaid
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def october_invoice(tenant: Any, *, credit: str | None = None) -> Invoice:
    """Three lines (an H100 at two prices, an A100) and, with `credit`, a promotional grant applied."""
    if credit is not None:
        CreditGrant.objects.create(
            tenant=tenant, kind="promotional", amount=Decimal(credit), reason="welcome", created_at=at(1)
        )
    write_usage(tenant, instance_type="gpu-h100x1", start=at(3, 8), seconds=36_000, price="2.4900")
    write_usage(tenant, instance_type="gpu-h100x1", start=at(20, 9), seconds=19_815, price="2.9900")
    write_usage(tenant, instance_type="gpu-a100x1", start=at(10, 1), seconds=12_000, price="1.2900")
    return services.invoice_close(tenant=tenant, month=OCTOBER)


def announce(invoices: list[Invoice], capture: Any) -> None:
    """What the close does on commit (until it sends the signal itself: test_collection_end_to_end.py)."""
    with capture(execute=True):
        invoice_finalized.send(sender=None, invoice_ids=[i.pk for i in invoices])


def test_each_finalized_invoice_gets_one_record_decided_by_mode_and_total(
    stripe_off, django_capture_on_commit_callbacks
) -> None:
    owing = october_invoice(postpaid(TenantFactory(credit=0)))
    prepaid = october_invoice(TenantFactory(credit=0))
    covered = october_invoice(postpaid(TenantFactory(credit=0)), credit="100.00")  # credit pays it all
    assert (owing.total, prepaid.total, covered.total) == (
        Decimal("45.66"),
        Decimal("45.66"),
        Decimal("0.00"),
    )

    announce([owing, prepaid, covered], django_capture_on_commit_callbacks)
    announce([owing, prepaid, covered], django_capture_on_commit_callbacks)  # delivered twice: no change

    states = {r.invoice_id: (r.state, r.amount_cents) for r in StripeInvoice.objects.all()}
    assert states == {
        owing.pk: (CollectionState.PENDING, 4566),
        # A prepaid tenant's positive total is wallet debt (the next top-up pays it): never charged.
        prepaid.pk: (CollectionState.PREPAID, 4566),
        covered.pk: (CollectionState.NOTHING_DUE, 0),
    }
    # Without Stripe keys the pending one waits; nothing is lost.
    assert StripeInvoice.objects.get(invoice=owing).attempts == 0


def test_a_postpaid_invoice_becomes_one_stripe_invoice_with_an_item_per_line_finalized(
    stripe_on, invoice_calls, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from stripe._invoice_service import InvoiceService

    created_params: list[dict[str, Any]] = []
    original_create = InvoiceService.create

    def spy(self: Any, params: Any, options: Any = None) -> Any:
        created_params.append(dict(params))
        return original_create(self, params, options)

    monkeypatch.setattr(InvoiceService, "create", spy)
    tenant = postpaid(TenantFactory(credit=0))
    invoice = october_invoice(tenant, credit="5.00")
    assert (invoice.subtotal, invoice.credits_applied, invoice.total) == (
        Decimal("45.66"),
        Decimal("5.00"),
        Decimal("40.66"),
    )

    announce([invoice], django_capture_on_commit_callbacks)  # the send is queued on commit and runs

    record = StripeInvoice.objects.get(invoice=invoice)
    assert record.state == CollectionState.OPEN
    assert record.stripe_invoice_id.startswith("in_") and record.sent_at is not None
    key = str(invoice.pk)
    [create] = invoice_calls.of("create_invoice")
    assert create["idempotency_key"] == f"gpucloud-invoice:{key}"
    assert create["metadata"]["gpucloud_invoice_id"] == key
    assert created_params[0]["collection_method"] == "charge_automatically"
    assert created_params[0]["pending_invoice_items_behavior"] == "exclude"
    items = invoice_calls.of("create_invoice_item")
    lines = list(invoice.lines.order_by("position"))
    assert [(i["amount_cents"], i["metadata"]["gpucloud_line"]) for i in items] == [
        *[(int(line.amount * 100), str(line.position)) for line in lines],
        (-500, "credits"),
    ]
    assert sum(i["amount_cents"] for i in items) == 4066  # Stripe's total is ours to the cent
    assert [i["idempotency_key"] for i in items] == [
        *[f"gpucloud-invoice-item:{key}:{line.position}" for line in lines],
        f"gpucloud-invoice-item:{key}:credits",
    ]
    assert all(i["invoice_id"] == record.stripe_invoice_id for i in items)
    assert items[0]["description"] == "gpu-a100x1 instance hours: 3.333333 h at 1.2900/h"
    [finalize] = invoice_calls.of("finalize_invoice")
    assert finalize == {
        "invoice_id": record.stripe_invoice_id,
        "idempotency_key": f"gpucloud-invoice-finalize:{key}",
    }
    assert AuditEvent.objects.filter(action="invoice.sent_for_payment", tenant=tenant).count() == 1

    # Sent once: later runs of the task find nothing to do.
    assert tasks.send_invoices.delay().get() == 0
    assert len(invoice_calls.of("create_invoice")) == 1


def test_a_prepaid_tenant_and_a_zero_total_reach_stripe_not_at_all(
    stripe_on, invoice_calls, django_capture_on_commit_callbacks
) -> None:
    prepaid = october_invoice(TenantFactory(credit=0))
    covered = october_invoice(postpaid(TenantFactory(credit=0)), credit="100.00")
    announce([prepaid, covered], django_capture_on_commit_callbacks)
    assert collection.invoices_send().sent == 0
    assert invoice_calls.calls == []


def test_an_outage_keeps_it_pending_with_backoff_and_it_is_sent_once_when_stripe_is_back(
    private_stripe_mock, invoice_calls, settings, django_capture_on_commit_callbacks
) -> None:
    settings.STRIPE_OUTBOX_BACKOFF_BASE_SECONDS = 30
    invoice = october_invoice(postpaid(TenantFactory(credit=0)))
    announce([invoice], django_capture_on_commit_callbacks)  # Stripe is down: the queued send fails
    record = StripeInvoice.objects.get(invoice=invoice)
    assert (record.state, record.attempts, record.stripe_invoice_id) == (CollectionState.PENDING, 1, "")
    assert "Stripe did not complete" in record.last_error
    now = timezone.now()
    assert collection.invoices_send(now=now).sent == 0  # not due yet (backoff): not even tried
    assert StripeInvoice.objects.get(pk=record.pk).attempts == 1

    private_stripe_mock.start()
    result = collection.invoices_send(now=now + timedelta(seconds=31))
    assert (result.sent, result.failed) == (1, 0)
    record.refresh_from_db()
    assert (record.state, record.attempts, record.last_error) == (CollectionState.OPEN, 2, "")
    assert collection.invoices_send(now=now + timedelta(hours=1)).sent == 0
    assert len(invoice_calls.of("create_invoice")) == 1
    assert len(invoice_calls.of("finalize_invoice")) == 1


def test_a_retry_after_a_failure_mid_way_adds_only_the_missing_items(
    stripe_on, invoice_calls, stripe_says, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    """Stripe fails after the first item: the record keeps the Stripe invoice's id; the next attempt lists the
    invoice's items (as Stripe would report them: stripe-mock's list is a fixture) and adds the others."""
    invoice = october_invoice(postpaid(TenantFactory(credit=0)))
    made: list[gateway.InvoiceItem] = []
    real_create_item = gateway.StripeGateway.create_invoice_item

    def second_item_fails(self: Any, **kwargs: Any) -> gateway.InvoiceItem:
        if len(made) == 1 and not getattr(second_item_fails, "recovered", False):
            raise gateway.StripeUnavailable("Stripe did not complete invoiceitem.create (APIConnectionError)")
        item = real_create_item(self, **kwargs)
        made.append(
            gateway.InvoiceItem(id=item.id, amount=kwargs["amount_cents"], metadata=kwargs["metadata"])
        )
        return item

    real_items = gateway.StripeGateway.invoice_items

    def items_on_stripe(self: Any, invoice_id: str) -> list[gateway.InvoiceItem]:
        real_items(self, invoice_id)  # the real call, for its shape
        return list(made)

    monkeypatch.setattr(gateway.StripeGateway, "create_invoice_item", second_item_fails)
    monkeypatch.setattr(gateway.StripeGateway, "invoice_items", items_on_stripe)
    announce([invoice], django_capture_on_commit_callbacks)
    record = StripeInvoice.objects.get(invoice=invoice)
    assert record.state == CollectionState.PENDING and record.stripe_invoice_id  # the id is kept
    assert len(made) == 1

    second_item_fails.recovered = True  # type: ignore[attr-defined]
    stripe_says(record.stripe_invoice_id, status="draft")  # not finalized yet
    assert collection.invoices_send(now=timezone.now() + timedelta(hours=1)).sent == 1
    assert [i.metadata["gpucloud_line"] for i in made] == ["1", "2", "3"]  # each line once
    assert len(invoice_calls.of("create_invoice")) == 1
    assert len(invoice_calls.of("finalize_invoice")) == 1


def test_a_stripe_invoice_an_earlier_attempt_made_is_adopted_not_created_again(
    stripe_on, invoice_calls, monkeypatch
) -> None:
    """A crash after Stripe made the invoice but before we recorded its id, retried after Stripe forgot the
    Idempotency-Key (24 h): the customer's invoices are searched by our metadata first."""
    invoice = october_invoice(postpaid(TenantFactory(credit=0)))
    collection.collections_create(invoice_ids=[invoice.pk])
    real_find = gateway.StripeGateway.find_invoice

    def finds_ours(self: Any, **kwargs: Any) -> gateway.Invoice:
        real_find(self, **kwargs)  # the real list call
        return gateway.Invoice(
            id="in_made_before", customer_id=None, status="open", subscription_id=None, metadata={}
        )

    monkeypatch.setattr(gateway.StripeGateway, "find_invoice", finds_ours)
    assert collection.invoices_send().sent == 1
    record = StripeInvoice.objects.get(invoice=invoice)
    # Already finalized by the earlier attempt: nothing is added, nothing finalized again.
    assert (record.stripe_invoice_id, record.state) == ("in_made_before", CollectionState.OPEN)
    assert invoice_calls.of("create_invoice") == invoice_calls.of("create_invoice_item") == []
    assert invoice_calls.of("finalize_invoice") == []


def test_an_item_changed_in_stripe_stops_the_invoice_from_being_finalized(
    stripe_on, invoice_calls, stripe_says, monkeypatch
) -> None:
    invoice = october_invoice(postpaid(TenantFactory(credit=0)))
    [record] = collection.collections_create(invoice_ids=[invoice.pk])
    StripeInvoice.objects.filter(pk=record.pk).update(stripe_invoice_id="in_edited")
    stripe_says("in_edited", status="draft")
    key = str(invoice.pk)
    edited = gateway.InvoiceItem(
        id="ii_1", amount=1, metadata={"gpucloud_invoice_id": key, "gpucloud_line": "1"}
    )
    monkeypatch.setattr(gateway.StripeGateway, "invoice_items", lambda self, invoice_id: [edited])
    result = collection.invoices_send()
    assert (result.sent, result.failed) == (0, 1)
    record.refresh_from_db()
    assert record.state == CollectionState.PENDING and "item 1 is 1 cents" in record.last_error
    assert invoice_calls.of("finalize_invoice") == []


def test_the_sweep_writes_records_the_receiver_missed(stripe_off) -> None:
    """A crash between the close's commit and the receiver: the beat task writes the record, for invoices
    finalized within the last week (not for those from long before collection was installed)."""
    invoice = october_invoice(postpaid(TenantFactory(credit=0)))
    assert collection.collections_sweep(now=timezone.now() + timedelta(days=8)) == 0
    assert not StripeInvoice.objects.exists()
    assert tasks.send_invoices.delay().get() == 0  # no keys: nothing sent, but the record is written
    assert list(StripeInvoice.objects.values_list("invoice_id", "state")) == [
        (invoice.pk, CollectionState.PENDING)
    ]


def test_a_receiver_failure_never_reaches_the_close(stripe_off, monkeypatch, caplog) -> None:
    invoice = october_invoice(postpaid(TenantFactory(credit=0)))

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(collection, "collections_create", broken)
    invoice_finalized.send(sender=None, invoice_ids=[invoice.pk])  # does not raise
    assert "the sweep retries" in caplog.text


def test_credit_carried_between_invoices_is_an_item_of_its_own_amount() -> None:
    """Lines of every kind reach Stripe for their own amount: usage with its hours and price, credit carried
    from an earlier invoice as a plain negative amount."""
    from apps.billing.invoices.models import InvoiceLine, LineKind

    tenant = postpaid(TenantFactory(credit=0))
    draft = Invoice.objects.create(
        tenant=tenant, month=OCTOBER, period_start=at(1), period_end=at(1) + timedelta(days=31)
    )
    InvoiceLine.objects.create(
        invoice=draft,
        position=1,
        usage_month=OCTOBER,
        meter="instance_seconds:gpu-h100x1",
        description="gpu-h100x1 instance hours",
        quantity_seconds=3600,
        unit_price_per_hour=Decimal("2.4900"),
        amount=Decimal("2.49"),
    )
    InvoiceLine.objects.create(
        invoice=draft,
        position=2,
        kind=LineKind.CREDIT,
        usage_month=OCTOBER,
        meter="credit_carried",
        description="Credit carried from invoice GPC-2026-09-000001",
        quantity_seconds=0,
        unit_price_per_hour=Decimal("0"),
        amount=Decimal("-1.20"),
    )
    items = collection.items_of(draft)
    assert [(key, cents, description) for key, cents, description, _ in items] == [
        ("1", 249, "gpu-h100x1 instance hours: 1.000000 h at 2.4900/h"),
        ("2", -120, "Credit carried from invoice GPC-2026-09-000001"),
    ]
    assert items[0][3]["usage_month"] == "2026-10"
