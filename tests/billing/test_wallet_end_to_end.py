"""End to end through the API, on the sandbox-free path (us-east-1 has no cluster connection here, so
stopping completes at once): a tenant with a small credit runs an instance until the money runs out, the
stop loop stops it (never deletes it), a new launch is refused with 402, and a credit grant lets it start
again."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.billing import limits
from apps.instances import services as instance_services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Observation
from tests.conftest import login_staff
from tests.factories import TenantFactory, UserFactory
from tests.instances.helpers import launch_body, seed

pytestmark = pytest.mark.django_db


def test_balance_runs_out_instance_stopped_launch_refused_credit_lets_it_start(
    make_actor, django_capture_on_commit_callbacks
):
    seed()
    actor = make_actor(tenant=TenantFactory(credit=0))
    client = actor.token_client()
    staff = login_staff(APIClient(), UserFactory(is_staff=True))
    grants = f"/api/v1/staff/tenants/{actor.tenant.slug}/credit-grants"

    # No credit: no launch.
    refused = client.post(actor.url("/instances"), launch_body(name="trainer"), format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "insufficient_funds")

    # Staff grant 0.50, about 723 s of an H100 at 2.49/h: enough for the 10 minutes a launch needs.
    assert staff.post(grants, {"amount": "0.50", "reason": "trial"}, format="json").status_code == 201
    launched = client.post(actor.url("/instances"), launch_body(name="trainer"), format="json")
    assert launched.status_code == 201, launched.content
    instance_id = launched.json()["id"]

    # The operator reports the pod Ready; running began 800 s ago.
    with django_capture_on_commit_callbacks(execute=True):
        instance_services.instance_observe(instance_id=instance_id, observation=Observation.POD_READY)
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=800)
    events = InstanceEvent.objects.filter(instance_id=instance_id)
    events.filter(billable=False).update(created_at=start - timedelta(seconds=1))
    events.filter(billable=True).update(created_at=start)
    Instance.objects.filter(pk=instance_id).update(billing_since=start)

    balance = client.get(actor.url("/billing/balance")).json()
    assert Decimal(balance["balance"]) < 0
    assert balance["burn_rate_per_hour"] == "2.4900" and balance["runway_seconds"] == 0

    # The stop loop stops it: stopped, never deleted.
    with django_capture_on_commit_callbacks(execute=True):
        assert limits.enforce_limits() == 1
    shown = client.get(actor.url(f"/instances/{instance_id}")).json()
    assert shown["state"] == "stopped"
    assert Instance.objects.filter(pk=instance_id, state="stopped").exists()
    timeline = client.get(actor.url(f"/instances/{instance_id}/events")).json()
    assert any(e.get("reason") == "insufficient_funds" for e in timeline["results"])

    # The ledger holds the run; the balance stops moving once nothing runs.
    after = client.get(actor.url("/billing/balance")).json()
    assert after["burn_rate_per_hour"] == "0.0000" and after["runway_seconds"] is None
    usage = client.get(
        actor.url("/billing/usage"),
        {"group_by": "instance", "from": (start - timedelta(hours=1)).isoformat()},
    ).json()
    assert [r["name"] for r in usage["results"]] == ["trainer"]
    assert 799 <= usage["results"][0]["quantity_seconds"] <= 802

    # A new launch and a start are refused while the balance is negative.
    again = client.post(actor.url("/instances"), launch_body(name="second"), format="json")
    assert (again.status_code, again.json()["error"]["code"]) == (402, "insufficient_funds")
    start_refused = client.post(actor.url(f"/instances/{instance_id}/start"))
    assert (start_refused.status_code, start_refused.json()["error"]["code"]) == (402, "insufficient_funds")

    # A credit grant (a top-up would do the same through the Stripe webhook) lets it start again.
    assert staff.post(grants, {"amount": "10.00", "reason": "top-up"}, format="json").status_code == 201
    assert Decimal(client.get(actor.url("/billing/balance")).json()["balance"]) > Decimal("9.8")
    started = client.post(actor.url(f"/instances/{instance_id}/start"))
    assert started.status_code == 202, started.content
    assert client.get(actor.url(f"/instances/{instance_id}")).json()["state"] == "starting"
