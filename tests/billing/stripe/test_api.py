"""POST .../billing/topups, .../billing/card-setup and .../billing/portal, against stripe-mock."""

from __future__ import annotations

import pytest

from apps.accounts import scopes
from apps.audit.models import AuditEvent
from apps.billing.models import CreditGrant
from apps.billing.stripe.models import CheckoutKind, CheckoutSession
from apps.tenants.roles import Role

pytestmark = pytest.mark.django_db


def test_topup_returns_a_checkout_url_and_grants_nothing_yet(stripe_on, owner) -> None:
    response = owner.token_client().post(owner.url("/billing/topups"), {"amount": "50.00"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["checkout_url"].startswith("https://")
    session = CheckoutSession.objects.get(session_id=body["session_id"])
    assert (session.tenant, session.kind, str(session.amount)) == (owner.tenant, CheckoutKind.TOPUP, "50.00")
    assert not CreditGrant.objects.filter(tenant=owner.tenant, kind="paid").exists()
    assert AuditEvent.objects.filter(action="billing.topup_checkout", tenant=owner.tenant).count() == 1


@pytest.mark.parametrize(
    "amount",
    ["9.99", "10000.01", "12.345", "abc", "-5", None],
)
def test_topup_amount_is_validated_by_field(stripe_on, owner, amount) -> None:
    payload = {} if amount is None else {"amount": amount}
    response = owner.token_client().post(owner.url("/billing/topups"), payload, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "invalid"
    assert "amount" in response.json()["error"]["fields"]
    assert not CheckoutSession.objects.exists()


@pytest.mark.parametrize("amount", ["10.00", "10000.00", 25])
def test_topup_bounds_are_inclusive(stripe_on, owner, amount) -> None:
    response = owner.token_client().post(owner.url("/billing/topups"), {"amount": amount}, format="json")
    assert response.status_code == 201, response.json()


def test_topup_is_idempotent_with_a_key(stripe_on, owner) -> None:
    client = owner.token_client()
    headers = {"HTTP_IDEMPOTENCY_KEY": "topup-1"}
    first = client.post(owner.url("/billing/topups"), {"amount": "20.00"}, format="json", **headers)
    second = client.post(owner.url("/billing/topups"), {"amount": "20.00"}, format="json", **headers)
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert first.json()["session_id"] == second.json()["session_id"]
    assert CheckoutSession.objects.count() == 1


@pytest.mark.parametrize("suffix", ["/billing/topups", "/billing/card-setup", "/billing/portal"])
def test_members_and_read_only_tokens_cannot_pay(stripe_on, make_actor, suffix) -> None:
    member = make_actor(Role.MEMBER)
    response = member.token_client().post(member.url(suffix), {"amount": "50.00"}, format="json")
    assert response.status_code == 403
    billing = make_actor(Role.BILLING, token_scopes=(scopes.BILLING_READ,))
    response = billing.token_client().post(billing.url(suffix), {"amount": "50.00"}, format="json")
    assert response.status_code == 403
    assert not CheckoutSession.objects.exists()


def test_billing_role_may_pay(stripe_on, make_actor) -> None:
    billing = make_actor(Role.BILLING)
    response = billing.session_client().post(
        billing.url("/billing/topups"), {"amount": "50.00"}, format="json"
    )
    assert response.status_code == 201


def test_card_setup_and_portal(stripe_on, owner) -> None:
    client = owner.token_client()
    setup = client.post(owner.url("/billing/card-setup"))
    assert setup.status_code == 201, setup.json()
    assert setup.json()["checkout_url"].startswith("https://")
    assert CheckoutSession.objects.get(session_id=setup.json()["session_id"]).kind == CheckoutKind.CARD_SETUP
    portal = client.post(owner.url("/billing/portal"))
    assert portal.status_code == 200
    assert portal.json()["portal_url"].startswith("https://")


@pytest.mark.parametrize("suffix", ["/billing/topups", "/billing/card-setup", "/billing/portal"])
def test_without_stripe_keys_payments_answer_503_not_configured(stripe_off, owner, suffix) -> None:
    response = owner.token_client().post(owner.url(suffix), {"amount": "50.00"}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "stripe_not_configured"


def test_stripe_down_answers_503_unavailable(settings, owner) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_123"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    response = owner.token_client().post(owner.url("/billing/topups"), {"amount": "50.00"}, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "stripe_unavailable"
    assert "sk_test" not in response.content.decode()


@pytest.mark.parametrize("suffix", ["/billing/topups", "/billing/card-setup", "/billing/portal"])
def test_a_suspended_tenant_can_still_pay(stripe_on, owner, suffix) -> None:
    from apps.tenants.services import tenant_suspend

    tenant_suspend(actor=None, tenant=owner.tenant, reason="Suspended for non-payment.")
    response = owner.token_client().post(owner.url(suffix), {"amount": "50.00"}, format="json")
    assert response.status_code in (200, 201), response.json()
