"""POST /api/v1/stripe/webhook with payloads signed exactly as Stripe signs them; processing re-fetches the
object from stripe-mock.

stripe-mock is stateless: a re-fetched object is a fixture (a checkout session "open"/"unpaid", an invoice
"draft" of some other customer). The `stripe_says` fixture (conftest.py) keeps the real call and overlays
the state a real Stripe account would return for that object.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.billing.models import CreditGrant
from apps.billing.stripe import checkout, customers, dunning, selectors, tasks
from apps.billing.stripe.models import BillingStatus, CheckoutSession, StripeEvent
from apps.instances.models import Instance
from apps.tenants.models import TenantStatus
from tests.billing.stripe.conftest import event_payload, sign
from tests.core.routes import KWARG_FACTORIES, make_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def topup(stripe_on, owner) -> CheckoutSession:
    return checkout.checkout_topup_create(actor=owner.user, tenant=owner.tenant, amount="50.00").record


def paid(session: CheckoutSession, stripe_says: Callable[..., Any]) -> None:
    stripe_says(session.session_id, status="complete", payment_status="paid", amount_total=5000)


def test_a_paid_topup_is_credited_once_even_when_delivered_twice(topup, stripe_says, post_event) -> None:
    paid(topup, stripe_says)
    payload = event_payload(
        "checkout.session.completed", topup.session_id, event_id="evt_topup_1", obj="checkout.session"
    )
    first = post_event(payload)
    assert first.status_code == 200, first.content
    assert first.json() == {"received": True, "duplicate": False}
    grant = CreditGrant.objects.get(external_id=topup.session_id)
    assert (grant.tenant_id, grant.kind, grant.amount) == (topup.tenant_id, "paid", Decimal("50.00"))
    assert StripeEvent.objects.get(pk="evt_topup_1").processed_at is not None

    again = post_event(payload)  # Stripe retries: same event id, signed anew
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert CreditGrant.objects.filter(tenant=topup.tenant, kind="paid").count() == 1
    assert StripeEvent.objects.count() == 1
    assert stripe_says() == [topup.session_id]  # processed (and re-fetched) once
    # A different event about the same session (e.g. a resend with a new id) credits nothing more.
    post_event(
        event_payload(
            "checkout.session.completed", topup.session_id, event_id="evt_topup_2", obj="checkout.session"
        )
    )
    assert CreditGrant.objects.filter(tenant=topup.tenant, kind="paid").count() == 1


def test_an_unpaid_session_credits_nothing(topup, stripe_says, post_event) -> None:
    stripe_says(topup.session_id, status="complete", payment_status="unpaid")
    post_event(event_payload("checkout.session.completed", topup.session_id, event_id="evt_u", obj="x"))
    assert not CreditGrant.objects.filter(kind="paid").exists()


def test_a_session_amount_other_than_ours_credits_nothing(topup, stripe_says, post_event) -> None:
    stripe_says(topup.session_id, status="complete", payment_status="paid", amount_total=1)
    post_event(event_payload("checkout.session.completed", topup.session_id, event_id="evt_a", obj="x"))
    assert not CreditGrant.objects.filter(kind="paid").exists()


def test_forged_signature_is_refused(topup, stripe_says, post_event) -> None:
    paid(topup, stripe_says)
    payload = event_payload("checkout.session.completed", topup.session_id, event_id="evt_f", obj="x")
    response = post_event(payload, sign(payload, secret="whsec_attacker"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    tampered = payload.replace(b"evt_f", b"evt_g")
    assert post_event(tampered, sign(payload)).status_code == 400
    assert post_event(payload, "").status_code == 400
    assert not StripeEvent.objects.exists()
    assert not CreditGrant.objects.filter(kind="paid").exists()


def test_stale_signature_is_refused(topup, stripe_says, post_event) -> None:
    paid(topup, stripe_says)
    payload = event_payload("checkout.session.completed", topup.session_id, event_id="evt_s", obj="x")
    stale = post_event(payload, sign(payload, timestamp=int(time.time()) - 301))
    assert stale.status_code == 400
    assert not StripeEvent.objects.exists()
    recent = post_event(payload, sign(payload, timestamp=int(time.time()) - 240))
    assert recent.status_code == 200


def test_without_keys_the_webhook_answers_503(stripe_off, post_event) -> None:
    payload = event_payload("invoice.paid", "in_1", event_id="evt_n", obj="invoice")
    response = post_event(payload)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "stripe_not_configured"


def test_the_webhook_needs_no_credentials_nor_csrf_and_only_takes_post(stripe_on, api_client) -> None:
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    payload = event_payload("invoice.paid", "in_1", event_id="evt_c", obj="invoice")
    response = csrf_client.post(
        "/api/v1/stripe/webhook",
        payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(payload),
    )
    assert response.status_code == 200
    not_allowed = api_client.get("/api/v1/stripe/webhook")
    assert not_allowed.status_code == 405
    assert not_allowed.json()["error"]["code"] == "method_not_allowed"


def test_card_setup_marks_the_card_on_file(stripe_on, owner, stripe_says, post_event) -> None:
    opened = checkout.checkout_card_setup_create(actor=owner.user, tenant=owner.tenant)
    stripe_says(
        opened.record.session_id, mode="setup", status="complete", payment_status="no_payment_required"
    )
    assert not selectors.card_on_file(tenant=owner.tenant)
    post_event(
        event_payload("checkout.session.completed", opened.record.session_id, event_id="evt_cs", obj="x")
    )
    assert selectors.card_on_file(tenant=owner.tenant)
    assert not CreditGrant.objects.filter(kind="paid").exists()


def test_setup_intent_succeeded_marks_the_card_on_file(stripe_on, owner, stripe_says, post_event) -> None:
    customer = customers.customer_for(tenant=owner.tenant)
    stripe_says("seti_1", status="succeeded", customer_id=customer.customer_id)
    post_event(event_payload("setup_intent.succeeded", "seti_1", event_id="evt_si", obj="setup_intent"))
    assert selectors.card_on_file(tenant=owner.tenant)


def test_subscription_changes_are_recorded(stripe_on, owner, stripe_says, post_event) -> None:
    customer = customers.customer_for(tenant=owner.tenant)
    stripe_says("sub_1", customer_id=customer.customer_id, status="past_due")
    post_event(event_payload("customer.subscription.updated", "sub_1", event_id="evt_su", obj="subscription"))
    customer.refresh_from_db()
    assert (customer.subscription_id, customer.subscription_status) == ("sub_1", "past_due")
    stripe_says("sub_1", customer_id=customer.customer_id, status="canceled")
    post_event(event_payload("customer.subscription.deleted", "sub_1", event_id="evt_sd", obj="subscription"))
    customer.refresh_from_db()
    assert customer.subscription_status == "canceled"


def test_payment_failed_then_grace_suspends_and_stops_then_paid_restores(
    stripe_on, owner, stripe_says, post_event, settings
) -> None:
    settings.BILLING_PAST_DUE_GRACE_HOURS = 72
    customer = customers.customer_for(tenant=owner.tenant)
    running = Instance.objects.get(pk=KWARG_FACTORIES["instance_id"](_world_of(owner)))
    other = make_world()  # another tenant, in good standing, keeps running
    other_instance = Instance.objects.get(pk=KWARG_FACTORIES["instance_id"](other))

    stripe_says("in_1", customer_id=customer.customer_id, status="open")
    post_event(event_payload("invoice.payment_failed", "in_1", event_id="evt_pf", obj="invoice"))
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.PAST_DUE
    assert selectors.launch_block_reason(tenant=owner.tenant) is not None
    assert selectors.launch_block_reason(tenant=other.tenant) is None

    assert dunning.enforce_past_due(now=timezone.now() + timedelta(hours=71)) == 0  # within the grace
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.ACTIVE
    assert tasks.enforce_past_due.delay().get() == 0

    assert dunning.enforce_past_due(now=timezone.now() + timedelta(hours=73)) == 1
    owner.tenant.refresh_from_db()
    running.refresh_from_db()
    other_instance.refresh_from_db()
    assert owner.tenant.status == TenantStatus.SUSPENDED
    assert running.desired_state == "stopped"  # stopped, not terminated: data kept
    assert Instance.objects.filter(pk=running.pk).exists()
    assert other_instance.desired_state != "stopped"

    stripe_says("in_1", customer_id=customer.customer_id, status="paid")
    post_event(event_payload("invoice.paid", "in_1", event_id="evt_ip", obj="invoice"))
    customer.refresh_from_db()
    owner.tenant.refresh_from_db()
    assert customer.billing_status == BillingStatus.ACTIVE
    assert owner.tenant.status == TenantStatus.ACTIVE
    assert selectors.launch_block_reason(tenant=owner.tenant) is None


def test_a_late_payment_failed_after_paid_changes_nothing(stripe_on, owner, stripe_says, post_event) -> None:
    customer = customers.customer_for(tenant=owner.tenant)
    stripe_says("in_2", customer_id=customer.customer_id, status="paid")  # re-fetched: already paid
    post_event(event_payload("invoice.payment_failed", "in_2", event_id="evt_late", obj="invoice"))
    customer.refresh_from_db()
    assert customer.billing_status == BillingStatus.ACTIVE


def test_processing_failure_is_kept_and_retried(topup, stripe_says, post_event, settings) -> None:
    paid(topup, stripe_says)
    good_base = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # Stripe unreachable while processing
    payload = event_payload("checkout.session.completed", topup.session_id, event_id="evt_r", obj="x")
    response = post_event(payload)
    assert response.status_code == 200  # received and stored; processing failed
    event = StripeEvent.objects.get(pk="evt_r")
    assert event.processed_at is None and event.attempts == 1 and "StripeUnavailable" in event.last_error
    assert not CreditGrant.objects.filter(kind="paid").exists()

    settings.STRIPE_API_BASE = good_base
    StripeEvent.objects.filter(pk="evt_r").update(received_at=timezone.now() - timedelta(minutes=5))
    assert tasks.retry_events.delay().get() == 1
    assert CreditGrant.objects.filter(external_id=topup.session_id).count() == 1
    assert tasks.retry_events.delay().get() == 0


def test_unknown_event_types_are_stored_and_marked_processed(stripe_on, post_event) -> None:
    post_event(event_payload("customer.created", "cus_1", event_id="evt_x", obj="customer"))
    assert StripeEvent.objects.get(pk="evt_x").processed_at is not None


def _world_of(actor: Any) -> Any:
    from tests.core.routes import World

    return World(tenant=actor.tenant, owner=actor.user)


def test_the_webhook_is_not_throttled_like_anonymous_api_clients(
    stripe_on, post_event, api_client, monkeypatch
) -> None:
    from apps.core.throttling import AnonymousRateThrottle

    monkeypatch.setattr(AnonymousRateThrottle, "THROTTLE_RATES", {"anon": "2/min"})
    for n in range(5):
        payload = event_payload("customer.created", f"cus_{n}", event_id=f"evt_t{n}", obj="customer")
        assert post_event(payload).status_code == 200
    assert StripeEvent.objects.count() == 5
