"""Billing end to end on the sandbox: a tenant whose balance runs out has its real pod stopped and further
launches refused (402); a top-up paid through Stripe Checkout, confirmed by a signed webhook, lets it start
again on a new pod.

Only the running time is simulated: the instance's `running` event is moved 800 s into the past instead of
waiting, and stripe-mock (stateless) is told what the paid Checkout Session looks like (`stripe_says`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import TestCase
from django.utils import timezone
from kubernetes import client

from apps.billing import limits
from apps.billing.models import CreditGrant
from apps.billing.services import credit_grant_create
from apps.billing.stripe.models import CheckoutSession
from apps.instances.models import Instance, InstanceEvent
from tests.billing.stripe.conftest import (  # noqa: F401  (fixtures shared with the Stripe tests)
    event_payload,
    post_event,
    stripe_mock_url,
    stripe_on,
    stripe_says,
)
from tests.factories import TenantFactory
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, make_actor
) -> Iterator[SandboxTenant]:
    connect(catalog.us_east, sandbox)
    actor = make_actor(tenant=TenantFactory(credit=0))
    sandbox_tenant = SandboxTenant(actor=actor, kube_clients=kube_clients)
    yield sandbox_tenant
    sandbox_tenant.cleanup()


def test_balance_runs_out_pod_stopped_launch_refused_topup_starts_again(
    tenant: SandboxTenant,
    stripe_on,  # noqa: F811
    stripe_says,  # noqa: F811
    post_event,  # noqa: F811
) -> None:
    actor = tenant.actor
    api = actor.token_client()
    credit_grant_create(tenant=actor.tenant, kind="promotional", amount=Decimal("0.50"), reason="trial")

    body = {"name": "trainer", "instance_type": "gpu-h100x1", "region": "us-east-1", "image": "pytorch"}
    instance_id = tenant.launch(**body)["id"]
    drive(instance_id, state_is("running"), what="running")
    assert tenant.read_pod(instance_id) is not None

    # 800 s of an H100 at 2.49/h is 0.553: more than the 0.50 credit (which carried the 10 minutes a
    # launch needs, 0.415).
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=800)
    events = InstanceEvent.objects.filter(instance_id=instance_id)
    events.filter(billable=False).update(created_at=start - timedelta(seconds=1))
    events.filter(billable=True).update(created_at=start)
    Instance.objects.filter(pk=instance_id).update(billing_since=start)
    assert Decimal(api.get(actor.url("/billing/balance")).json()["balance"]) < 0

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert limits.enforce_limits() == 1
    drive(instance_id, state_is("stopped"), what="stopped")
    assert tenant.read_pod(instance_id) is None  # the pod is gone; the instance is kept
    refused = api.post(actor.url("/instances"), {**body, "name": "second"}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "insufficient_funds")

    # Top up 20.00 through Checkout; Stripe confirms it with a signed webhook.
    topup = api.post(actor.url("/billing/topups"), {"amount": "20.00"}, format="json")
    assert topup.status_code == 201, topup.content
    session = CheckoutSession.objects.get(tenant=actor.tenant)
    stripe_says(session.session_id, status="complete", payment_status="paid", amount_total=2000)
    delivered = post_event(
        event_payload(
            "checkout.session.completed", session.session_id, event_id="evt_e2e", obj="checkout.session"
        )
    )
    assert delivered.status_code == 200, delivered.content
    assert CreditGrant.objects.get(external_id=session.session_id).amount == Decimal("20.00")

    started = tenant.act(instance_id, "start")
    assert started["state"] == "starting"
    drive(instance_id, state_is("running"), what="running again")
    assert tenant.read_pod(instance_id) is not None
