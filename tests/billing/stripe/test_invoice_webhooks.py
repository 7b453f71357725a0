"""Invoices we collect, followed through Stripe's webhooks (signed as Stripe signs them, processed from the
invoice re-fetched from stripe-mock with the state a real account would report overlaid): the record's state,
the invoice's payment_status in the API, and the past-due flow (past due, suspended after the grace,
reactivated when paid or voided)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing.invoices.models import Invoice, InvoiceStatus
from apps.billing.stripe import customers, dunning, selectors
from apps.billing.stripe.models import BillingStatus, CollectionState, StripeInvoice
from apps.instances.models import Instance
from apps.tenants.models import TenantStatus
from tests.billing.stripe.conftest import event_payload, postpaid
from tests.core.routes import KWARG_FACTORIES, World

pytestmark = pytest.mark.django_db


def sent_invoice(tenant: Any, month: date, stripe_id: str, total: str = "40.66") -> StripeInvoice:
    """A finalized invoice of ours whose Stripe invoice was sent and is being collected (state open)."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    invoice = Invoice.objects.create(
        tenant=tenant,
        month=month,
        period_start=start,
        period_end=start + timedelta(days=31),
        status=InvoiceStatus.FINALIZED,
        number=f"GPC-{month:%Y-%m}-{stripe_id}",
        subtotal=Decimal(total),
        total=Decimal(total),
        finalized_at=timezone.now(),
    )
    return StripeInvoice.objects.create(
        invoice=invoice,
        tenant=tenant,
        state=CollectionState.OPEN,
        amount_cents=int(Decimal(total) * 100),
        stripe_invoice_id=stripe_id,
        sent_at=timezone.now(),
    )


@pytest.fixture
def collecting(stripe_on: str, owner: Any) -> tuple[Any, Any, StripeInvoice]:
    postpaid(owner.tenant)
    customer = customers.customer_for(tenant=owner.tenant)
    return owner, customer, sent_invoice(owner.tenant, date(2026, 10, 1), "in_oct")


def deliver(post_event: Callable[..., Any], event_type: str, stripe_id: str, event_id: str) -> None:
    response = post_event(event_payload(event_type, stripe_id, event_id=event_id, obj="invoice"))
    assert response.status_code == 200, response.content


def payment_status(owner: Any, record: StripeInvoice) -> str:
    body = owner.token_client().get(owner.url(f"/billing/invoices/{record.invoice_id}")).json()
    listed = owner.token_client().get(owner.url("/billing/invoices")).json()["results"]
    assert {row["id"]: row["payment_status"] for row in listed}[str(record.invoice_id)] == body[
        "payment_status"
    ]
    return str(body["payment_status"])


def test_paid_marks_the_invoice_paid(collecting, stripe_says, post_event) -> None:
    owner, customer, record = collecting
    assert payment_status(owner, record) == "open"
    stripe_says("in_oct", customer_id=customer.customer_id, status="paid")
    deliver(post_event, "invoice.paid", "in_oct", "evt_paid")
    record.refresh_from_db()
    assert (record.state, record.stripe_status) == (CollectionState.PAID, "paid")
    assert payment_status(owner, record) == "paid"
    assert AuditEvent.objects.filter(action="invoice.payment_status", tenant=owner.tenant).count() == 1


def test_a_failed_payment_makes_the_tenant_past_due_then_suspended_and_paying_reactivates(
    collecting, stripe_says, post_event, settings
) -> None:
    settings.BILLING_PAST_DUE_GRACE_HOURS = 72
    owner, customer, record = collecting
    running = Instance.objects.get(
        pk=KWARG_FACTORIES["instance_id"](World(tenant=owner.tenant, owner=owner.user))
    )

    stripe_says("in_oct", customer_id=customer.customer_id, status="open")
    deliver(post_event, "invoice.payment_failed", "in_oct", "evt_failed")
    record.refresh_from_db()
    customer.refresh_from_db()
    assert record.state == CollectionState.PAYMENT_FAILED
    assert payment_status(owner, record) == "payment_failed"
    assert customer.billing_status == BillingStatus.PAST_DUE
    assert selectors.launch_block_reason(tenant=owner.tenant) is not None

    # Stripe retries and fails again: still past due since the first failure (the grace does not restart).
    since = customer.past_due_since
    deliver(post_event, "invoice.payment_failed", "in_oct", "evt_failed_again")
    customer.refresh_from_db()
    assert customer.past_due_since == since

    assert dunning.enforce_past_due(now=timezone.now() + timedelta(hours=73)) == 1
    owner.tenant.refresh_from_db()
    running.refresh_from_db()
    assert owner.tenant.status == TenantStatus.SUSPENDED
    assert running.desired_state == "stopped"

    stripe_says("in_oct", customer_id=customer.customer_id, status="paid")
    deliver(post_event, "invoice.paid", "in_oct", "evt_paid_late")
    record.refresh_from_db()
    customer.refresh_from_db()
    owner.tenant.refresh_from_db()
    assert record.state == CollectionState.PAID
    assert customer.billing_status == BillingStatus.ACTIVE
    assert owner.tenant.status == TenantStatus.ACTIVE
    assert selectors.launch_block_reason(tenant=owner.tenant) is None


def test_paying_one_invoice_does_not_lift_past_due_while_another_is_unpaid(
    collecting, stripe_says, post_event
) -> None:
    owner, customer, october = collecting
    november = sent_invoice(owner.tenant, date(2026, 11, 1), "in_nov")
    stripe_says("in_oct", customer_id=customer.customer_id, status="open")
    deliver(post_event, "invoice.payment_failed", "in_oct", "evt_oct_failed")
    stripe_says("in_nov", customer_id=customer.customer_id, status="paid")
    deliver(post_event, "invoice.paid", "in_nov", "evt_nov_paid")
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.PAST_DUE  # October is still owed
    assert StripeInvoice.objects.get(pk=november.pk).state == CollectionState.PAID

    stripe_says("in_oct", customer_id=customer.customer_id, status="paid")
    deliver(post_event, "invoice.paid", "in_oct", "evt_oct_paid")
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.ACTIVE
    assert StripeInvoice.objects.get(pk=october.pk).state == CollectionState.PAID


def test_voided_is_no_longer_owed_and_lifts_past_due(collecting, stripe_says, post_event) -> None:
    owner, customer, record = collecting
    stripe_says("in_oct", customer_id=customer.customer_id, status="open")
    deliver(post_event, "invoice.payment_failed", "in_oct", "evt_f")
    stripe_says("in_oct", customer_id=customer.customer_id, status="void")
    deliver(post_event, "invoice.voided", "in_oct", "evt_void")
    record.refresh_from_db()
    customer.refresh_from_db()
    assert record.state == CollectionState.VOID
    assert payment_status(owner, record) == "void"
    assert customer.billing_status == BillingStatus.ACTIVE


def test_marked_uncollectible_stays_owed_and_makes_the_tenant_past_due(
    collecting, stripe_says, post_event
) -> None:
    owner, customer, record = collecting
    stripe_says("in_oct", customer_id=customer.customer_id, status="uncollectible")
    deliver(post_event, "invoice.marked_uncollectible", "in_oct", "evt_unc")
    record.refresh_from_db()
    customer.refresh_from_db()
    assert record.state == CollectionState.UNCOLLECTIBLE
    assert payment_status(owner, record) == "uncollectible"
    assert customer.billing_status == BillingStatus.PAST_DUE
    # Paid later after all (Stripe allows it): settled.
    stripe_says("in_oct", customer_id=customer.customer_id, status="paid")
    deliver(post_event, "invoice.paid", "in_oct", "evt_paid_after_all")
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.ACTIVE
    assert StripeInvoice.objects.get(pk=record.pk).state == CollectionState.PAID


def test_a_failure_delivered_after_the_payment_changes_nothing(collecting, stripe_says, post_event) -> None:
    _owner, customer, record = collecting
    stripe_says("in_oct", customer_id=customer.customer_id, status="paid")
    deliver(post_event, "invoice.paid", "in_oct", "evt_p")
    deliver(post_event, "invoice.payment_failed", "in_oct", "evt_late_failure")  # re-fetched: paid
    record.refresh_from_db()
    customer.refresh_from_db()
    assert record.state == CollectionState.PAID
    assert customer.billing_status == BillingStatus.ACTIVE


def test_an_event_before_the_id_was_recorded_finds_the_record_by_our_metadata(
    collecting, stripe_says, post_event
) -> None:
    _owner, customer, record = collecting
    StripeInvoice.objects.filter(pk=record.pk).update(stripe_invoice_id="", state=CollectionState.PENDING)
    stripe_says(
        "in_early",
        customer_id=customer.customer_id,
        status="open",
        metadata={"gpucloud_invoice_id": str(record.invoice_id)},
    )
    deliver(post_event, "invoice.payment_failed", "in_early", "evt_early")
    record.refresh_from_db()
    assert (record.stripe_invoice_id, record.state) == ("in_early", CollectionState.PAYMENT_FAILED)


def test_payment_status_of_invoices_without_a_record(owner) -> None:
    """Invoices from before collection existed (or whose record is not written yet) show what it would say."""
    prepaid = Invoice.objects.create(
        tenant=owner.tenant,
        month=date(2026, 9, 1),
        period_start=datetime(2026, 9, 1, tzinfo=UTC),
        period_end=datetime(2026, 10, 1, tzinfo=UTC),
        status=InvoiceStatus.FINALIZED,
        number="GPC-2026-09-900001",
        subtotal=Decimal("3.00"),
        total=Decimal("3.00"),
        finalized_at=timezone.now(),
    )
    assert selectors.payment_status_of(prepaid) == CollectionState.PREPAID
    postpaid(owner.tenant)
    prepaid.refresh_from_db()
    assert selectors.payment_status_of(Invoice.objects.get(pk=prepaid.pk)) == CollectionState.PENDING
    draft = Invoice.objects.create(
        tenant=owner.tenant,
        month=date(2026, 8, 1),
        period_start=datetime(2026, 8, 1, tzinfo=UTC),
        period_end=datetime(2026, 9, 1, tzinfo=UTC),
        subtotal=Decimal("3.00"),
        total=Decimal("3.00"),
    )
    assert selectors.payment_status_of(draft) == CollectionState.NOTHING_DUE


def test_listing_invoices_reads_payment_status_without_a_query_per_invoice(owner) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    postpaid(owner.tenant)
    client = owner.token_client()
    sent_invoice(owner.tenant, date(2026, 10, 1), "in_a")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(owner.url("/billing/invoices")).status_code == 200
        return len(queries)

    count()  # the first request of a token also records its use
    one = count()
    sent_invoice(owner.tenant, date(2026, 9, 1), "in_b")
    sent_invoice(owner.tenant, date(2026, 8, 1), "in_c")
    assert count() == one
