"""Hard limits: 402 insufficient_funds on launch and start, postpaid credit limits, hard budgets, the loop
that stops instances whose runway has ended, and budget alerts sent once each."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import limits, services
from apps.billing.models import BudgetAlert
from apps.billing.selectors import month_start, wallet_of
from apps.core.errors import PaymentRequired
from apps.instances import services as instance_services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Action
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import grant, launch, minute_aligned, run_since, usage
from tests.factories import MembershipFactory, TenantFactory
from tests.instances.helpers import launch_body, seed

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def broke(make_actor):
    seed()
    return make_actor(tenant=TenantFactory(credit=0))


@pytest.fixture
def enforce(django_capture_on_commit_callbacks):
    """Run the stop loop and what it queues on commit (the reconciler: stopping -> stopped without a
    cluster)."""

    def run(now):
        with django_capture_on_commit_callbacks(execute=True):
            return limits.enforce_limits(now=now)

    return run


def assert_402(response) -> dict:
    assert response.status_code == 402, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "insufficient_funds" and error["message"]
    return error


def test_launch_at_zero_balance_answers_402_and_creates_nothing(broke):
    response = broke.token_client().post(broke.url("/instances"), launch_body(), format="json")
    assert assert_402(response)["details"]["balance"] == "0"
    assert not Instance.objects.filter(tenant=broke.tenant).exists()

    grant(broke.tenant, "1.00")
    response = broke.token_client().post(broke.url("/instances"), launch_body(), format="json")
    assert response.status_code == 201, response.content


def test_launch_with_a_negative_balance_answers_402(broke):
    grant(broke.tenant, "1.00")
    usage(broke.tenant, "1.000001", end=minute_aligned() - timedelta(hours=1))
    with pytest.raises(PaymentRequired):
        launch(broke)


def test_start_at_zero_balance_answers_402_and_the_instance_stays_stopped(
    broke, django_capture_on_commit_callbacks
):
    grant(broke.tenant, "1.00")
    instance = launch(broke)
    with django_capture_on_commit_callbacks(execute=True):
        instance_services.instance_act(actor=None, instance=instance, action=Action.STOP)
    instance.refresh_from_db()
    assert instance.state == "stopped"  # no cluster in us-east-1 here: stopping completes at once
    usage(broke.tenant, "1.00", end=minute_aligned() - timedelta(minutes=1))

    response = broke.token_client().post(broke.url(f"/instances/{instance.pk}/start"))
    assert_402(response)
    instance.refresh_from_db()
    assert instance.state == "stopped"

    grant(broke.tenant, "0.50")
    assert broke.token_client().post(broke.url(f"/instances/{instance.pk}/start")).status_code == 202


def test_postpaid_tenants_are_refused_only_past_their_credit_limit(broke):
    services.billing_mode_set(actor=None, tenant=broke.tenant, mode="postpaid", credit_limit="50.00")
    launch(broke, name="at-zero")  # balance 0, credit limit 50: allowed
    usage(broke.tenant, "49.50", end=minute_aligned() - timedelta(hours=1))
    launch(broke, name="almost")  # 0.50 of headroom carries 10 minutes of an H100 (0.415)
    usage(broke.tenant, "0.50", end=minute_aligned() - timedelta(hours=2))
    with pytest.raises(PaymentRequired, match="credit limit"):
        launch(broke, name="past-the-limit")


def test_an_exhausted_hard_budget_refuses_launches_and_a_soft_one_does_not(broke):
    grant(broke.tenant, "100.00")
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="5.00", hard=False)
    usage(broke.tenant, "5.00", end=max(minute_aligned(), month_start(timezone.now()) + timedelta(minutes=1)))
    launch(broke, name="soft")
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="5.00", hard=True)
    with pytest.raises(PaymentRequired, match="budget"):
        launch(broke, name="hard")
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="6.00", hard=True)
    launch(broke, name="raised")


# --- the stop loop ---------------------------------------------------------------------------------------


def test_instances_are_stopped_when_the_money_runs_out_never_deleted(broke, enforce, make_actor):
    grant(broke.tenant, "0.50")  # about 723 s of an H100 at 2.49/h (a launch needs 600 s of it)
    now = minute_aligned()
    running = run_since(launch(broke), now - timedelta(seconds=800))
    rich = make_actor(tenant=TenantFactory(credit=1000))
    other = run_since(launch(rich), now - timedelta(seconds=120))

    assert wallet_of(broke.tenant, now).balance < 0
    assert enforce(now) == 1

    running.refresh_from_db()
    other.refresh_from_db()
    assert running.state == "stopped" and running.desired_state == "stopped"
    assert other.state == "running"
    stop = InstanceEvent.objects.get(instance=running, name="stop")
    assert stop.reason == "insufficient_funds" and not stop.actor_label.startswith(broke.user.email)
    assert AuditEvent.objects.filter(
        tenant=broke.tenant, action="instance.stop", metadata__reason="insufficient_funds"
    ).exists()
    assert enforce(now) == 0  # nothing left to stop


def test_instances_stop_when_the_runway_is_shorter_than_the_grace(broke, enforce, settings):
    settings.BILLING_STOP_GRACE_SECONDS = 10
    now = minute_aligned()
    # 595 s will be used (0.411542), leaving 0.008458: 12 s of runway at 2.49/h.
    grant(broke.tenant, "0.42")
    instance = run_since(launch(broke), now - timedelta(seconds=595))
    w = wallet_of(broke.tenant, now)
    assert w.runway_seconds == 12
    assert enforce(now) == 0
    assert enforce(now + timedelta(seconds=3)) == 1  # 9 s left
    instance.refresh_from_db()
    assert instance.state == "stopped"


def test_a_spent_hard_budget_stops_instances_too(broke, enforce):
    grant(broke.tenant, "100.00")
    now = max(minute_aligned(), month_start(timezone.now()) + timedelta(minutes=2))  # a minute in this month
    instance = run_since(launch(broke), now - timedelta(seconds=60))
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="0.05", hard=True)
    assert enforce(now) == 0  # 0.0415 of 0.05 spent: 12 s of budget left
    assert enforce(now + timedelta(seconds=5)) == 1
    instance.refresh_from_db()
    assert instance.state == "stopped"


# --- budget alerts ---------------------------------------------------------------------------------------


def test_budget_alerts_fire_once_each_per_month(broke, django_capture_on_commit_callbacks):
    billing = MembershipFactory(tenant=broke.tenant, role=Role.BILLING)
    MembershipFactory(tenant=broke.tenant, role=Role.MEMBER)
    now = month_start(timezone.now()) + timedelta(days=3)
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="10.00", hard=False)

    def check() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return limits.check_budgets(now=now)

    assert check() == 0
    usage(broke.tenant, "4.99", end=now - timedelta(hours=5))
    assert check() == 0
    usage(broke.tenant, "0.01", end=now - timedelta(hours=4))  # 5.00: 50 %
    assert check() == 1
    assert check() == 0
    usage(broke.tenant, "4.50", end=now - timedelta(hours=3))  # 9.50: 80 %
    assert check() == 1
    usage(broke.tenant, "0.50", end=now - timedelta(hours=2))  # 10.00: 100 %
    assert check() == 1
    assert check() == 0

    assert sorted(BudgetAlert.objects.filter(tenant=broke.tenant).values_list("threshold", flat=True)) == [
        50,
        80,
        100,
    ]
    events = AuditEvent.objects.filter(tenant=broke.tenant, action="billing.budget_alert")
    assert sorted(e.metadata["threshold"] for e in events) == [50, 80, 100]
    assert len(mail.outbox) == 3
    assert {tuple(m.to) for m in mail.outbox} == {tuple(sorted([broke.user.email, billing.user.email]))}
    assert "100% of the monthly budget" in mail.outbox[-1].subject

    # Last month's usage does not count for this month, and the next month starts afresh.
    next_month = month_start(now + timedelta(days=32)) + timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert limits.check_budgets(now=next_month) == 0
    usage(broke.tenant, "6.00", end=next_month - timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        assert limits.check_budgets(now=next_month) == 1
    assert len(mail.outbox) == 4


def test_the_periodic_tasks_are_scheduled_and_run(settings, broke, django_capture_on_commit_callbacks):
    from apps.billing import tasks
    from config.celery import app

    names = {"apps.billing.tasks.enforce_limits", "apps.billing.tasks.check_budgets"}
    assert names <= {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names <= set(app.tasks)

    grant(broke.tenant, "0.42")  # just enough to launch an H100 (0.415 for 10 minutes)
    instance = run_since(launch(broke), timezone.now() - timedelta(seconds=700))
    services.budget_set(actor=None, tenant=broke.tenant, monthly_budget="0.01", hard=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.enforce_limits.delay().get() == 1
    instance.refresh_from_db()
    assert instance.state == "stopped"
    with django_capture_on_commit_callbacks(execute=True):
        sent = tasks.check_budgets.delay().get()
    # The usage falls into this month unless the test runs in the first minute of one.
    assert sent == len(BudgetAlert.objects.filter(tenant=broke.tenant)) and len(mail.outbox) == sent
