"""End to end: the month close of a postpaid tenant (apps.billing.invoices.services.period_close) announces
its invoices on commit; the Stripe app collects them (one Stripe invoice, an item per line, finalized, charged
automatically against stripe-mock); Stripe's signed webhooks then make the invoice paid, or the tenant past
due, as the invoice API shows. A prepaid tenant closed in the same run is not charged."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from apps.billing.invoices import services
from apps.billing.stripe.models import BillingStatus, CollectionState, StripeCustomer, StripeInvoice
from tests.billing.invoices.helpers import OCTOBER, at, write_usage
from tests.billing.stripe.conftest import event_payload, postpaid
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_a_closed_month_is_charged_through_stripe_and_followed_to_paid(
    stripe_on, make_actor, invoice_calls, stripe_says, post_event, django_capture_on_commit_callbacks
) -> None:
    actor = make_actor(tenant=postpaid(TenantFactory(credit=0)))
    prepaid = TenantFactory(credit=0)
    for tenant in (actor.tenant, prepaid):
        write_usage(tenant, instance_type="gpu-h100x1", start=at(3, 8), seconds=36_000, price="2.4900")
        write_usage(tenant, instance_type="gpu-a100x1", start=at(10, 1), seconds=12_000, price="1.2900")

    with django_capture_on_commit_callbacks(execute=True):
        invoices = services.period_close(month=OCTOBER, now=at(1, 0, 30, month=OCTOBER) + timedelta(days=31))

    ours = next(i for i in invoices if i.tenant_id == actor.tenant.pk)
    assert ours.total == Decimal("29.20")  # 24.90 + 4.30
    record = StripeInvoice.objects.get(invoice=ours)
    assert record.state == CollectionState.OPEN and record.stripe_invoice_id
    assert [c["amount_cents"] for c in invoice_calls.of("create_invoice_item")] == [430, 2490]
    assert len(invoice_calls.of("finalize_invoice")) == 1
    theirs = StripeInvoice.objects.get(invoice__tenant=prepaid)
    assert theirs.state == CollectionState.PREPAID and not theirs.stripe_invoice_id

    client = actor.token_client()
    url = actor.url(f"/billing/invoices/{ours.pk}")
    assert client.get(url).json()["payment_status"] == "open"

    customer = StripeCustomer.objects.get(tenant=actor.tenant)
    stripe_says(record.stripe_invoice_id, customer_id=customer.customer_id, status="open")
    payload = event_payload(
        "invoice.payment_failed", record.stripe_invoice_id, event_id="evt_e2e_f", obj="invoice"
    )
    assert post_event(payload).status_code == 200
    assert client.get(url).json()["payment_status"] == "payment_failed"
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.PAST_DUE

    stripe_says(record.stripe_invoice_id, customer_id=customer.customer_id, status="paid")
    payload = event_payload("invoice.paid", record.stripe_invoice_id, event_id="evt_e2e_p", obj="invoice")
    assert post_event(payload).status_code == 200
    assert client.get(url).json()["payment_status"] == "paid"
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.ACTIVE
