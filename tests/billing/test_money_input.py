"""Money comes in as a decimal string, as the schema says; a JSON number is refused on its field (found by
the fuzzer: {"credit_limit": 0} was accepted although the schema says string)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.billing.models import CreditGrant
from tests.conftest import Actor, login_staff


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [25, 25.5])
def test_a_budget_sent_as_a_number_is_refused_on_the_field(owner: Actor, amount: float) -> None:
    response = owner.token_client().put(
        owner.url("/billing/budget"), {"monthly_budget": amount}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "monthly_budget": ['Send the amount as a string, such as "12.50".']
    }


@pytest.mark.django_db
def test_a_budget_sent_as_a_string_is_taken(owner: Actor) -> None:
    response = owner.token_client().put(
        owner.url("/billing/budget"), {"monthly_budget": "25.50"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["monthly_budget"] == "25.50"


@pytest.mark.django_db
def test_staff_credit_and_credit_limit_refuse_numbers(owner: Actor, staff_user: object) -> None:
    client = login_staff(APIClient(), staff_user)
    base = f"/api/v1/staff/tenants/{owner.tenant.slug}"
    before = CreditGrant.objects.count()

    grant = client.post(f"{base}/credit-grants", {"amount": 10, "kind": "promotional"}, format="json")
    mode = client.put(f"{base}/billing-mode", {"mode": "prepaid", "credit_limit": 0}, format="json")

    assert grant.status_code == 400 and "amount" in grant.json()["error"]["fields"]
    assert mode.status_code == 400 and "credit_limit" in mode.json()["error"]["fields"]
    assert CreditGrant.objects.count() == before
