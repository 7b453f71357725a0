"""Admission asks for a runway: a launch, start or restart is refused (402 insufficient_funds, details naming
the shortfall) unless the wallet carries the tenant's burn rate including the instance for
BILLING_LAUNCH_RUNWAY_MINUTES (default 10). A balance above zero is not enough."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from apps.billing import services
from apps.billing.selectors import wallet_of
from apps.core.errors import PaymentRequired
from apps.instances import services as instance_services
from apps.instances.models import Instance
from apps.instances.states import Action
from apps.storage.models import Volume
from tests.billing.wallet_helpers import grant, launch, minute_aligned, run_since, usage
from tests.factories import TenantFactory
from tests.instances.helpers import launch_body, seed

pytestmark = pytest.mark.django_db

D = Decimal
H100 = D("2.4900")  # gpu-h100x1 per hour
H100X8 = D("19.9200")  # gpu-h100x8 per hour


@pytest.fixture
def broke(make_actor):
    seed()
    return make_actor(tenant=TenantFactory(credit=0))


def refused(response) -> dict:
    assert response.status_code == 402, response.content[:400]
    error = response.json()["error"]
    assert error["code"] == "insufficient_funds"
    return error


def test_a_cent_of_credit_does_not_launch_eight_gpus(broke):
    grant(broke.tenant, "0.01")
    client = broke.token_client()
    response = client.post(broke.url("/instances"), launch_body(instance_type="gpu-h100x8"), format="json")
    error = refused(response)
    details = error["details"]
    # 10 minutes of 19.92/h is 3.32; the balance covers 0.01.
    assert details["runway_minutes"] == 10
    assert D(details["instance_price_per_hour"]) == H100X8
    assert D(details["burn_rate_per_hour"]) == H100X8
    assert D(details["required"]) == D("3.32")
    assert D(details["available"]) == D("0.01")
    assert D(details["shortfall"]) == D("3.31")
    assert details["limited_by"] == "balance"
    assert "10 minutes" in error["message"] and "3.310000 short" in error["message"]
    assert not Instance.objects.filter(tenant=broke.tenant).exists()


def test_exactly_enough_runway_is_admitted_and_a_cent_less_is_not(broke):
    grant(broke.tenant, "3.31")
    with pytest.raises(PaymentRequired) as caught:
        launch(broke, instance_type="gpu-h100x8", name="short")
    assert caught.value.details["shortfall"] == "0.010000"
    grant(broke.tenant, "0.01")  # 3.32: ten minutes exactly
    instance = launch(broke, instance_type="gpu-h100x8", name="eight")
    assert instance.instance_type.slug == "gpu-h100x8"


def test_the_runway_counts_what_already_runs(broke):
    grant(broke.tenant, "0.70")
    now = minute_aligned()
    run_since(launch(broke, name="first"), now)  # running: 2.49/h in the burn rate from now
    assert wallet_of(broke.tenant).burn_rate_per_hour == H100
    # Alone the second H100 would need 0.415; with the first it needs 0.83 for 10 minutes.
    response = broke.token_client().post(broke.url("/instances"), launch_body(name="second"), format="json")
    details = refused(response)["details"]
    assert D(details["burn_rate_per_hour"]) == 2 * H100
    assert D(details["required"]) == D("0.83")
    assert D(details["shortfall"]) > 0


def test_the_runway_length_is_a_setting(broke, settings):
    grant(broke.tenant, "1.00")
    settings.BILLING_LAUNCH_RUNWAY_MINUTES = 30  # 1.245 for an H100
    response = broke.token_client().post(broke.url("/instances"), launch_body(), format="json")
    details = refused(response)["details"]
    assert (details["runway_minutes"], D(details["required"])) == (30, D("1.245"))
    settings.BILLING_LAUNCH_RUNWAY_MINUTES = 20  # 0.83
    assert broke.token_client().post(broke.url("/instances"), launch_body(), format="json").status_code == 201


def test_start_needs_the_runway_too(broke, django_capture_on_commit_callbacks):
    grant(broke.tenant, "1.00")
    instance = launch(broke)
    with django_capture_on_commit_callbacks(execute=True):
        instance_services.instance_act(actor=None, instance=instance, action=Action.STOP)
    instance.refresh_from_db()
    assert instance.state == "stopped"
    usage(broke.tenant, "0.80", end=minute_aligned() - timedelta(minutes=1))  # 0.20 left: above zero

    client = broke.token_client()
    details = refused(client.post(broke.url(f"/instances/{instance.pk}/start")))["details"]
    assert (D(details["required"]), D(details["available"]), D(details["shortfall"])) == (
        D("0.415"),
        D("0.20"),
        D("0.215"),
    )
    instance.refresh_from_db()
    assert instance.state == "stopped"

    grant(broke.tenant, "0.22")  # 0.42
    assert client.post(broke.url(f"/instances/{instance.pk}/start")).status_code == 202


def test_restart_needs_the_runway_without_counting_the_instance_twice(broke):
    grant(broke.tenant, "1.00")
    now = minute_aligned()
    instance = run_since(launch(broke), now)
    # 0.30 left, less up to 0.0415 for the running minute so far; 2.49/h burning.
    usage(broke.tenant, "0.70", end=now - timedelta(minutes=1))
    client = broke.token_client()
    details = refused(client.post(broke.url(f"/instances/{instance.pk}/restart")))["details"]
    # The running instance is already in the burn rate: 0.415 for 10 minutes, not 0.83.
    assert D(details["burn_rate_per_hour"]) == H100
    assert D(details["required"]) == D("0.415")
    instance.refresh_from_db()
    assert instance.state == "running"

    grant(broke.tenant, "0.20")  # 0.4585 to 0.50 left: enough for the instance once (0.415), not twice
    response = client.post(broke.url(f"/instances/{instance.pk}/restart"))
    assert response.status_code == 202, response.content


def test_postpaid_headroom_and_a_hard_budget_are_held_to_the_runway(broke):
    services.billing_mode_set(actor=None, tenant=broke.tenant, mode="postpaid", credit_limit="0.40")
    response = broke.token_client().post(broke.url("/instances"), launch_body(), format="json")
    details = refused(response)["details"]
    assert (details["limited_by"], D(details["available"]), D(details["shortfall"])) == (
        "credit_limit",
        D("0.40"),
        D("0.015"),
    )
    services.billing_mode_set(actor=None, tenant=broke.tenant, mode="postpaid", credit_limit="100.00")
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="0.30", hard=True)
    response = broke.token_client().post(broke.url("/instances"), launch_body(), format="json")
    details = refused(response)["details"]
    assert (details["limited_by"], D(details["available"])) == ("budget", D("0.30"))
    assert "hard monthly budget" in response.json()["error"]["message"]


def test_a_volume_needs_the_runway_of_its_own_storage(broke, settings):
    settings.VOLUME_PRICE_PER_GIB_HOUR = D("0.0002")
    grant(broke.tenant, "0.01")
    body = {"name": "data", "size_gib": 1000, "region": "us-east-1"}
    response = broke.token_client().post(broke.url("/volumes"), body, format="json")
    details = refused(response)["details"]
    # 1000 GiB at 0.0002 per GiB-hour is 0.20/h: 0.033334 (rounded up) for 10 minutes.
    assert (D(details["burn_rate_per_hour"]), D(details["required"])) == (D("0.2"), D("0.033334"))
    assert not Volume.objects.filter(tenant=broke.tenant).exists()
    body["size_gib"] = 100  # 0.02/h: 0.003334 for 10 minutes
    assert broke.token_client().post(broke.url("/volumes"), body, format="json").status_code == 201
