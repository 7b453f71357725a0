"""End to end through the API and the webhook: a tenant without credit is refused a launch (402); a top-up
through Stripe Checkout, confirmed by a signed checkout.session.completed, credits the wallet once and the
launch goes through."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.billing.models import CreditGrant
from tests.billing.stripe.conftest import event_payload
from tests.factories import TenantFactory
from tests.instances.helpers import launch_body, seed

pytestmark = pytest.mark.django_db


def test_a_topup_through_the_webhook_lets_the_tenant_launch(
    stripe_on,
    make_actor,
    stripe_says,
    post_event,
) -> None:
    seed()
    actor = make_actor(tenant=TenantFactory(credit=0))
    client = actor.token_client()
    refused = client.post(actor.url("/instances"), launch_body(name="trainer"), format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "insufficient_funds")

    opened = client.post(actor.url("/billing/topups"), {"amount": "25.00"}, format="json")
    assert opened.status_code == 201, opened.content
    session_id = opened.json()["session_id"]
    # Still refused: opening a checkout is not paying.
    assert client.post(actor.url("/instances"), launch_body(name="trainer"), format="json").status_code == 402

    stripe_says(session_id, status="complete", payment_status="paid", amount_total=2500)
    payload = event_payload(
        "checkout.session.completed", session_id, event_id="evt_e2e", obj="checkout.session"
    )
    assert post_event(payload).status_code == 200
    assert post_event(payload).json()["duplicate"] is True

    assert CreditGrant.objects.get(external_id=session_id).amount == Decimal("25.00")
    balance = client.get(actor.url("/billing/balance")).json()
    assert Decimal(balance["balance"]) == Decimal("25.00")
    launched = client.post(actor.url("/instances"), launch_body(name="trainer"), format="json")
    assert launched.status_code == 201, launched.content
