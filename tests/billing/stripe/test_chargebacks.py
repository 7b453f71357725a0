"""Refunds, disputes and delayed payments of top-ups, through POST /api/v1/stripe/webhook with payloads signed
exactly as Stripe signs them; processing re-fetches the charge, refund, dispute or session from stripe-mock
(stateless: `stripe_says` keeps the real call and overlays what a real account would return).

The paid credit a refund or dispute takes back is a CreditReversal the wallet draws down; a prepaid tenant it
leaves below zero is suspended for non-payment (instances stopped) and reactivated by a top-up that covers it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import services as billing_services
from apps.billing.models import CreditGrant, CreditReversal
from apps.billing.selectors import wallet_of
from apps.billing.stripe import tasks
from apps.billing.stripe.gateway import Refund
from apps.billing.stripe.models import StripeEvent
from apps.billing.stripe.standing import REVERSED_REASON
from apps.instances.models import Instance
from apps.tenants.models import TenantStatus
from tests.billing.stripe.conftest import event_payload
from tests.billing.wallet_helpers import launch, minute_aligned, run_since, usage
from tests.factories import TenantFactory
from tests.instances.helpers import launch_body, seed

pytestmark = pytest.mark.django_db

D = Decimal
_event_ids = itertools.count()


@pytest.fixture
def actor(stripe_on, make_actor):
    seed()
    return make_actor(tenant=TenantFactory(credit=0))


@pytest.fixture
def deliver(post_event) -> Callable[..., Any]:
    """deliver(type, object_id, obj): a new signed event (fresh id) about object_id, processed at once."""

    def send(event_type: str, object_id: str, obj: str, *, event_id: str | None = None) -> str:
        event_id = event_id or f"evt_{next(_event_ids)}"
        response = post_event(event_payload(event_type, object_id, event_id=event_id, obj=obj))
        assert response.status_code == 200, response.content
        return event_id

    return send


def paid_topup(actor, stripe_says, deliver, *, amount: str = "50.00", pi: str = "pi_topup") -> CreditGrant:
    """A top-up opened through the API and paid (checkout.session.completed), with its PaymentIntent."""
    opened = actor.token_client().post(actor.url("/billing/topups"), {"amount": amount}, format="json")
    assert opened.status_code == 201, opened.content
    session_id = opened.json()["session_id"]
    cents = int(D(amount) * 100)
    stripe_says(
        session_id, status="complete", payment_status="paid", amount_total=cents, payment_intent_id=pi
    )
    deliver("checkout.session.completed", session_id, "checkout.session")
    return CreditGrant.objects.get(external_id=session_id)


def refunds(charge: str, *items: tuple[str, int, str]) -> tuple[Refund, ...]:
    return tuple(
        Refund(id=rid, amount=amount, status=status, charge_id=charge) for rid, amount, status in items
    )


def charge_says(stripe_says, charge: str, pi: str, *items: tuple[str, int, str]) -> None:
    stripe_says(
        charge,
        payment_intent_id=pi,
        amount=5000,
        amount_refunded=sum(a for _, a, s in items if s not in ("failed", "canceled")),
        refunds=refunds(charge, *items),
    )


def withdrawn(grant: CreditGrant, source: str | None = None) -> Decimal:
    rows = CreditReversal.objects.filter(grant=grant)
    if source is not None:
        rows = rows.filter(source_id=source)
    return sum((r.amount for r in rows), D(0))


# --- refunds -----------------------------------------------------------------------------------------------


def test_a_full_refund_takes_the_paid_credit_back_once(actor, stripe_says, deliver) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    assert wallet_of(actor.tenant).balance == D("50.00")
    charge_says(stripe_says, "ch_1", "pi_topup", ("re_1", 5000, "succeeded"))

    first = deliver("charge.refunded", "ch_1", "charge")
    reversal = CreditReversal.objects.get(grant=grant)
    assert (reversal.cause, reversal.source_id, reversal.amount, reversal.sequence) == (
        "refund",
        "re_1",
        D("50"),
        1,
    )
    assert reversal.stripe_event_id == first and reversal.tenant_id == actor.tenant.pk
    w = wallet_of(actor.tenant)
    assert (w.balance, w.credits) == (D("0"), D("0"))
    assert w.remaining[str(grant.pk)] == 0
    audit = AuditEvent.objects.get(tenant=actor.tenant, action="billing.credit_reversal")
    assert audit.metadata["source_id"] == "re_1" and audit.metadata["amount"] == "50.00"

    # Stripe redelivers the event (same id), and sends another event about the same refund (new id).
    deliver("charge.refunded", "ch_1", "charge", event_id=first)
    deliver("charge.refunded", "ch_1", "charge")
    assert CreditReversal.objects.filter(grant=grant).count() == 1
    assert wallet_of(actor.tenant).balance == D("0")
    # At exactly zero the tenant is not below zero: still active.
    actor.tenant.refresh_from_db()
    assert actor.tenant.status == TenantStatus.ACTIVE


def test_partial_refunds_reverse_only_what_was_refunded_once_each_in_any_order(
    actor, stripe_says, deliver
) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    # Two partial refunds; the second event is processed first (Stripe does not order deliveries), so the
    # re-fetched charge already shows both.
    charge_says(stripe_says, "ch_2", "pi_topup", ("re_a", 1000, "succeeded"), ("re_b", 1500, "succeeded"))
    deliver("charge.refunded", "ch_2", "charge")
    assert (withdrawn(grant, "re_a"), withdrawn(grant, "re_b")) == (D("10.00"), D("15.00"))
    # The first event arrives late: nothing more moves.
    deliver("charge.refunded", "ch_2", "charge")
    assert CreditReversal.objects.filter(grant=grant).count() == 2
    assert wallet_of(actor.tenant).balance == D("25.00")
    assert CreditGrant.objects.get(pk=grant.pk).amount == D("50.00")  # the grant itself is never edited

    # A third refund later: only it is added.
    charge_says(
        stripe_says,
        "ch_2",
        "pi_topup",
        ("re_a", 1000, "succeeded"),
        ("re_b", 1500, "succeeded"),
        ("re_c", 500, "succeeded"),
    )
    deliver("charge.refunded", "ch_2", "charge")
    assert withdrawn(grant) == D("30.00") and wallet_of(actor.tenant).balance == D("20.00")


def test_a_refund_that_fails_gives_the_credit_back(actor, stripe_says, deliver) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    charge_says(stripe_says, "ch_3", "pi_topup", ("re_p", 2000, "pending"))
    deliver("charge.refunded", "ch_3", "charge")
    assert withdrawn(grant, "re_p") == D("20.00")  # pending: the money is on its way back, counted now

    charge_says(stripe_says, "ch_3", "pi_topup", ("re_p", 2000, "failed"))
    stripe_says("re_p", status="failed", charge_id="ch_3")
    deliver("charge.refund.updated", "re_p", "refund")
    movements = list(CreditReversal.objects.filter(source_id="re_p").order_by("sequence"))
    assert [(m.sequence, m.amount) for m in movements] == [(1, D("20.00")), (2, D("-20.00"))]
    assert wallet_of(actor.tenant).balance == D("50.00")


# --- disputes ----------------------------------------------------------------------------------------------


def dispute_says(stripe_says, dispute: str, status: str, *, amount: int = 5000) -> None:
    stripe_says(dispute, status=status, amount=amount, charge_id="ch_d", payment_intent_id="pi_topup")


@pytest.mark.parametrize(("outcome", "balance"), [("won", D("50.00")), ("lost", D("0"))])
def test_a_dispute_withdraws_the_credit_and_its_outcome_decides(
    actor, stripe_says, deliver, outcome, balance
) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    dispute_says(stripe_says, "dp_1", "needs_response")
    deliver("charge.dispute.created", "dp_1", "dispute")
    assert withdrawn(grant, "dp_1") == D("50.00")
    assert wallet_of(actor.tenant).balance == D("0")
    deliver("charge.dispute.created", "dp_1", "dispute")  # repeated: nothing more
    assert CreditReversal.objects.filter(source_id="dp_1").count() == 1

    dispute_says(stripe_says, "dp_1", outcome)
    deliver("charge.dispute.closed", "dp_1", "dispute")
    deliver("charge.dispute.closed", "dp_1", "dispute")
    assert wallet_of(actor.tenant).balance == balance
    assert CreditReversal.objects.filter(source_id="dp_1").count() == (2 if outcome == "won" else 1)
    # A created event delivered after the close (out of order) re-reads the closed dispute: nothing moves.
    deliver("charge.dispute.created", "dp_1", "dispute")
    assert wallet_of(actor.tenant).balance == balance


def test_an_inquiry_withdraws_nothing(actor, stripe_says, deliver) -> None:
    paid_topup(actor, stripe_says, deliver)
    dispute_says(stripe_says, "dp_w", "warning_needs_response")
    deliver("charge.dispute.created", "dp_w", "dispute")
    assert not CreditReversal.objects.exists()
    assert wallet_of(actor.tenant).balance == D("50.00")


def test_a_refunded_then_disputed_charge_is_taken_back_once(actor, stripe_says, deliver) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    charge_says(stripe_says, "ch_d", "pi_topup", ("re_full", 5000, "succeeded"))
    deliver("charge.refunded", "ch_d", "charge")
    dispute_says(stripe_says, "dp_2", "needs_response")
    deliver("charge.dispute.created", "dp_2", "dispute")
    assert withdrawn(grant) == D("50.00")  # never more than was paid
    assert not CreditReversal.objects.filter(source_id="dp_2").exists()


# --- standing: suspension below zero, reactivation on payment -------------------------------------------


def test_a_chargeback_that_leaves_the_wallet_below_zero_suspends_and_stops_then_a_topup_reactivates(
    actor, stripe_says, deliver, django_capture_on_commit_callbacks
) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    now = minute_aligned()
    usage(actor.tenant, "30.00", end=now - timedelta(hours=1))  # spent 30 of the 50
    running = run_since(launch(actor), now)
    other = TenantFactory()  # another tenant in good standing keeps running
    assert wallet_of(actor.tenant).balance > D("19.9")

    dispute_says(stripe_says, "dp_3", "needs_response")
    with django_capture_on_commit_callbacks(execute=True):
        deliver("charge.dispute.created", "dp_3", "dispute")
    assert withdrawn(grant) == D("50.00")
    assert wallet_of(actor.tenant).balance < D("-29.9")
    actor.tenant.refresh_from_db()
    assert (actor.tenant.status, actor.tenant.status_reason) == (TenantStatus.SUSPENDED, REVERSED_REASON)
    running.refresh_from_db()
    assert running.desired_state == "stopped"  # stopped, never deleted
    assert Instance.objects.filter(pk=running.pk).exists()
    assert AuditEvent.objects.filter(tenant=actor.tenant, action="tenant.suspend").exists()
    other.refresh_from_db()
    assert other.status == TenantStatus.ACTIVE

    # Suspended: no launch; paying is still allowed.
    client = actor.token_client()
    suspended = client.post(actor.url("/instances"), launch_body(name="new"), format="json")
    assert (suspended.status_code, suspended.json()["error"]["code"]) == (403, "tenant_suspended")
    assert "refund or chargeback" in suspended.json()["error"]["message"]
    # A top-up too small to cover the debt keeps it suspended; one that covers it reactivates.
    paid_topup(actor, stripe_says, deliver, amount="20.00", pi="pi_small")
    actor.tenant.refresh_from_db()
    assert actor.tenant.status == TenantStatus.SUSPENDED
    paid_topup(actor, stripe_says, deliver, amount="40.00", pi="pi_enough")
    actor.tenant.refresh_from_db()
    assert (actor.tenant.status, actor.tenant.status_reason) == (TenantStatus.ACTIVE, "")
    assert wallet_of(actor.tenant).balance > D("29.9")


def test_a_dispute_won_reactivates_a_tenant_suspended_for_it(actor, stripe_says, deliver) -> None:
    paid_topup(actor, stripe_says, deliver)
    usage(actor.tenant, "10.00", end=minute_aligned() - timedelta(hours=1))
    dispute_says(stripe_says, "dp_4", "needs_response")
    deliver("charge.dispute.created", "dp_4", "dispute")
    actor.tenant.refresh_from_db()
    assert actor.tenant.status == TenantStatus.SUSPENDED
    dispute_says(stripe_says, "dp_4", "won")
    deliver("charge.dispute.closed", "dp_4", "dispute")
    actor.tenant.refresh_from_db()
    assert actor.tenant.status == TenantStatus.ACTIVE
    assert wallet_of(actor.tenant).balance == D("40.00")


def test_a_reversal_that_leaves_the_balance_above_zero_does_not_suspend(actor, stripe_says, deliver) -> None:
    paid_topup(actor, stripe_says, deliver)
    charge_says(stripe_says, "ch_5", "pi_topup", ("re_5", 1000, "succeeded"))
    deliver("charge.refunded", "ch_5", "charge")
    actor.tenant.refresh_from_db()
    assert actor.tenant.status == TenantStatus.ACTIVE
    assert wallet_of(actor.tenant).balance == D("40.00")


def test_other_suspensions_are_not_lifted_by_a_topup(actor, stripe_says, deliver) -> None:
    from apps.tenants.services import tenant_suspend

    tenant_suspend(actor=None, tenant=actor.tenant, reason="Abuse report under review.")
    paid_topup(actor, stripe_says, deliver)
    actor.tenant.refresh_from_db()
    assert (actor.tenant.status, actor.tenant.status_reason) == (
        TenantStatus.SUSPENDED,
        "Abuse report under review.",
    )


def test_a_postpaid_tenant_owes_the_reversal_on_its_invoice_instead(actor, stripe_says, deliver) -> None:
    billing_services.billing_mode_set(actor=None, tenant=actor.tenant, mode="postpaid", credit_limit="100.00")
    paid_topup(actor, stripe_says, deliver)
    usage(actor.tenant, "30.00", end=minute_aligned() - timedelta(hours=1))
    charge_says(stripe_says, "ch_6", "pi_topup", ("re_6", 5000, "succeeded"))
    deliver("charge.refunded", "ch_6", "charge")
    assert wallet_of(actor.tenant).balance == D("-30.00")
    actor.tenant.refresh_from_db()
    assert actor.tenant.status == TenantStatus.ACTIVE


# --- ordering against the credit, charges that are not ours -------------------------------------------------


def test_a_refund_processed_before_its_topup_is_credited_waits_and_is_retried(
    actor, stripe_says, deliver, stripe_sessions_of
) -> None:
    opened = actor.token_client().post(actor.url("/billing/topups"), {"amount": "50.00"}, format="json")
    session_id = opened.json()["session_id"]
    stripe_sessions_of["pi_late"] = session_id
    charge_says(stripe_says, "ch_7", "pi_late", ("re_7", 5000, "succeeded"))
    refund_event = deliver("charge.refunded", "ch_7", "charge")
    event = StripeEvent.objects.get(pk=refund_event)
    assert event.processed_at is None and "TopupNotCreditedYet" in event.last_error
    assert not CreditReversal.objects.exists()

    stripe_says(
        session_id, status="complete", payment_status="paid", amount_total=5000, payment_intent_id="pi_late"
    )
    deliver("checkout.session.completed", session_id, "checkout.session")
    assert wallet_of(actor.tenant).balance == D("50.00")

    StripeEvent.objects.filter(pk=refund_event).update(received_at=timezone.now() - timedelta(minutes=5))
    assert tasks.retry_events.delay().get() == 1
    assert wallet_of(actor.tenant).balance == D("0")


def test_a_charge_that_is_not_a_topup_of_ours_changes_nothing(
    actor, stripe_says, deliver, stripe_sessions_of
) -> None:
    paid_topup(actor, stripe_says, deliver)
    charge_says(stripe_says, "ch_8", "pi_someone_else", ("re_8", 5000, "succeeded"))
    event_id = deliver("charge.refunded", "ch_8", "charge")
    assert StripeEvent.objects.get(pk=event_id).processed_at is not None
    assert not CreditReversal.objects.exists()
    assert wallet_of(actor.tenant).balance == D("50.00")


# --- delayed payment methods -----------------------------------------------------------------------------


def test_a_delayed_payment_credits_only_when_it_succeeds(actor, stripe_says, deliver) -> None:
    opened = actor.token_client().post(actor.url("/billing/topups"), {"amount": "25.00"}, format="json")
    session_id = opened.json()["session_id"]
    stripe_says(session_id, status="complete", payment_status="unpaid", amount_total=2500)
    deliver("checkout.session.completed", session_id, "checkout.session")
    assert not CreditGrant.objects.filter(tenant=actor.tenant).exists()

    stripe_says(session_id, status="complete", payment_status="paid", amount_total=2500)
    deliver("checkout.session.async_payment_succeeded", session_id, "checkout.session")
    deliver("checkout.session.async_payment_succeeded", session_id, "checkout.session")
    assert list(CreditGrant.objects.filter(tenant=actor.tenant).values_list("kind", "amount")) == [
        ("paid", D("25.00"))
    ]
    assert wallet_of(actor.tenant).balance == D("25.00")


def test_a_delayed_payment_that_fails_credits_nothing_and_is_audited(actor, stripe_says, deliver) -> None:
    opened = actor.token_client().post(actor.url("/billing/topups"), {"amount": "25.00"}, format="json")
    session_id = opened.json()["session_id"]
    stripe_says(session_id, status="complete", payment_status="unpaid", amount_total=2500)
    deliver("checkout.session.completed", session_id, "checkout.session")
    deliver("checkout.session.async_payment_failed", session_id, "checkout.session")
    assert not CreditGrant.objects.filter(tenant=actor.tenant).exists()
    failed = AuditEvent.objects.get(tenant=actor.tenant, action="billing.topup_failed")
    assert failed.metadata["session_id"] == session_id
    # Refused launches stay refused: there is no credit.
    response = actor.token_client().post(actor.url("/instances"), launch_body(), format="json")
    assert response.status_code == 402


# --- the record ------------------------------------------------------------------------------------------


def test_reversals_are_append_only(actor, stripe_says, deliver) -> None:
    grant = paid_topup(actor, stripe_says, deliver)
    charge_says(stripe_says, "ch_9", "pi_topup", ("re_9", 1000, "succeeded"))
    deliver("charge.refunded", "ch_9", "charge")
    reversal = CreditReversal.objects.get(grant=grant)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        CreditReversal.objects.filter(pk=reversal.pk).update(amount=D("0.01"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        CreditReversal.objects.filter(pk=reversal.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditReversal.objects.create(
            tenant=actor.tenant, grant=grant, cause="refund", source_id="re_9", sequence=1, amount=D("1.00")
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditReversal.objects.create(
            tenant=actor.tenant, grant=grant, cause="refund", source_id="re_x", sequence=1, amount=D("0")
        )


def test_the_credits_api_shows_what_was_taken_back(actor, stripe_says, deliver) -> None:
    paid_topup(actor, stripe_says, deliver)
    charge_says(stripe_says, "ch_10", "pi_topup", ("re_10", 1250, "succeeded"))
    deliver("charge.refunded", "ch_10", "charge")
    listed = actor.token_client().get(actor.url("/billing/credits")).json()["results"]
    assert [(c["kind"], D(c["amount"]), D(c["reversed"]), D(c["remaining"])) for c in listed] == [
        ("paid", D("50.00"), D("12.50"), D("37.50"))
    ]
    balance = actor.token_client().get(actor.url("/billing/balance")).json()
    assert (D(balance["balance"]), D(balance["credits"])) == (D("37.50"), D("37.50"))
