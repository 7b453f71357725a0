"""A tenant with a past-due invoice launches nothing (402), whatever its balance; paying restores it."""

from apps.billing.stripe.models import BillingStatus, StripeCustomer
from tests.instances.helpers import launch_body, seed


def test_past_due_refuses_launches_with_402(owner):
    seed()
    customer = StripeCustomer.objects.create(
        tenant=owner.tenant, customer_id="cus_test_past_due", billing_status=BillingStatus.PAST_DUE
    )
    client = owner.token_client()

    refused = client.post(owner.url("/instances"), launch_body(), format="json")
    assert refused.status_code == 402, refused.content
    assert refused.json()["error"]["code"] == "insufficient_funds"
    assert "past due" in refused.json()["error"]["message"]

    customer.billing_status = BillingStatus.ACTIVE
    customer.save()
    assert client.post(owner.url("/instances"), launch_body(), format="json").status_code == 201
