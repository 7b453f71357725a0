"""The billing clock follows the GPUs, not readiness: an instance is billed from the moment its container
started on a node (Ready or not) until it is stopped, restarted, terminated or fails. A pod that never turns
Ready is failed `not_ready` after INSTANCE_READY_TIMEOUT_SECONDS (issue 16, docs/security.md)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core import mail
from django.db.models import Sum
from django.utils import timezone

from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.billing.selectors import wallet_of
from apps.instances import services, timers
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Action, Observation
from apps.operator.watcher import KubeEventHandler

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self, at):
        self.at = at

    def now(self):
        return self.at


@pytest.fixture
def clock(monkeypatch):
    """The time as the services read it, two hours ago, so the ledger's windows have all closed by now."""
    at = Clock(timezone.now().replace(microsecond=0) - timedelta(hours=2))
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=at.now))
    return at


@pytest.fixture
def instance(tenant_owner, launch, clock):
    response = launch(tenant_owner, name="never-ready", command=["sleep", "infinity"])
    assert response.status_code == 201
    # Launched at the clock's time (the launch itself read the wall clock).
    Instance.objects.filter(pk=response.json()["id"]).update(state_changed_at=clock.at)
    return Instance.objects.get(pk=response.json()["id"])


def _billed_in_ledger(instance: Instance) -> int:
    metering.meter_instance(Instance.objects.get(pk=instance.pk), now=timezone.now())
    rows = UsageRecord.objects.filter(resource_id=str(instance.pk))
    return rows.aggregate(s=Sum("quantity_seconds"))["s"] or 0


def test_a_started_container_is_billed_while_not_ready(instance, clock, tenant_owner) -> None:
    start = clock.at + timedelta(seconds=3)
    clock.at += timedelta(seconds=5)  # seen two seconds after the kubelet started the container
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=start)

    instance.refresh_from_db()
    assert (instance.state, instance.billing_since) == ("provisioning", start)
    event = InstanceEvent.objects.get(instance=instance, name="pod_started")
    assert (event.created_at, event.billable, event.to_state) == (start, True, "provisioning")
    body = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()
    assert body["billing_since"] is not None and body["state"] == "provisioning"
    # It is in the wallet's burn rate and open usage at once: the runway falls while it waits.
    wallet = wallet_of(tenant_owner.tenant, now=start + timedelta(seconds=600))
    assert wallet.burn_rate_per_hour == Decimal(instance.price_per_hour)

    clock.at = start + timedelta(seconds=600)
    services.instance_act(actor=None, instance=instance, action=Action.STOP)
    instance.refresh_from_db()
    assert instance.billing_since is None
    assert instance.billed_seconds() == 600 == _billed_in_ledger(instance)
    assert instance.running_seconds() == 0  # it never ran: readiness is not what is billed


def test_seen_again_the_clock_is_not_restarted(instance, clock) -> None:
    first = clock.at + timedelta(seconds=1)
    clock.at += timedelta(seconds=2)
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=first)
    clock.at += timedelta(seconds=60)
    again = services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=clock.at
    )
    assert again is None
    assert Instance.objects.get(pk=instance.pk).billing_since == first
    assert InstanceEvent.objects.filter(instance=instance, name="pod_started").count() == 1


def test_ready_at_once_gets_a_start_line_dated_by_the_container(instance, clock) -> None:
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_CREATED)
    start = clock.at + timedelta(seconds=2)
    clock.at += timedelta(seconds=4)
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_READY, started_at=start)

    names = list(
        InstanceEvent.objects.filter(instance=instance).order_by("id").values_list("name", "billable")
    )
    assert names == [("launch", False), ("pod_created", False), ("pod_started", True), ("pod_ready", True)]
    instance.refresh_from_db()
    assert (instance.billing_since, instance.running_since) == (start, clock.at)


def test_a_start_time_before_the_last_state_change_is_clamped(instance, clock) -> None:
    """A container start stamped before the action that made this pod (clock skew, second resolution)
    never bills time before it, so billed intervals stay in the timeline's order."""
    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=clock.at - timedelta(hours=5)
    )
    assert Instance.objects.get(pk=instance.pk).billing_since == clock.at


def test_kube_events_while_billed_do_not_end_the_billed_interval(instance, clock) -> None:
    start = clock.at + timedelta(seconds=1)
    clock.at += timedelta(seconds=2)
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=start)
    KubeEventHandler(instance.region_id)(
        "ADDED",
        {
            "involvedObject": {"kind": "Pod", "name": f"i-{instance.pk}"},
            "reason": "Unhealthy",
            "message": "Readiness probe failed",
            "type": "Warning",
        },
    )
    assert InstanceEvent.objects.get(instance=instance, kind="kube_event").billable is True
    clock.at = start + timedelta(seconds=300)
    services.instance_act(actor=None, instance=instance, action=Action.TERMINATE)
    assert _billed_in_ledger(instance) == 300


def test_restart_stops_billing_until_the_new_container_starts(instance, clock) -> None:
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_READY, started_at=clock.at)
    clock.at += timedelta(seconds=100)
    services.instance_act(actor=None, instance=instance, action=Action.RESTART)
    clock.at += timedelta(seconds=30)  # the old pod goes, the new one is scheduled: not billed
    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=clock.at
    )
    clock.at += timedelta(seconds=50)
    services.instance_act(actor=None, instance=instance, action=Action.STOP)
    assert _billed_in_ledger(instance) == 150 == Instance.objects.get(pk=instance.pk).billed_seconds()


# --- the ready timeout -----------------------------------------------------------------------------------


def test_not_ready_within_the_timeout_fails_stops_billing_and_emails(
    instance, clock, tenant_owner, settings, django_capture_on_commit_callbacks
) -> None:
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 600
    start = clock.at
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_STARTED, started_at=start)

    clock.at = start + timedelta(seconds=599)
    assert timers.enforce_timers(now=clock.at) == 0
    clock.at = start + timedelta(seconds=600)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert timers.enforce_timers(now=clock.at) == 1

    instance.refresh_from_db()
    assert (instance.state, instance.failure_reason, instance.billing_since) == ("failed", "not_ready", None)
    assert instance.desired_state == "running"  # the reconciler deletes the pod of a failed instance
    assert "did not become ready within 600 s" in instance.state_message
    assert _billed_in_ledger(instance) == 600
    event = InstanceEvent.objects.filter(instance=instance).latest("id")
    assert (event.name, event.reason, event.from_state, event.billable) == (
        "failed",
        "not_ready",
        "provisioning",
        False,
    )
    assert len(callbacks) >= 2  # the email and the reconcile that deletes the pod
    (email,) = mail.outbox
    assert email.to == [tenant_owner.user.email]
    assert "not_ready" in email.subject and "never became ready" in email.body
    assert timers.enforce_timers(now=clock.at + timedelta(hours=1)) == 0  # failed: nothing more


def test_the_timeout_counts_from_entering_starting(instance, clock, settings) -> None:
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 600
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_READY, started_at=clock.at)
    clock.at += timedelta(hours=3)
    services.instance_act(actor=None, instance=instance, action=Action.RESTART)  # starting from here
    assert timers.enforce_timers(now=clock.at + timedelta(seconds=599)) == 0
    assert timers.enforce_timers(now=clock.at + timedelta(seconds=600)) == 1
    assert Instance.objects.get(pk=instance.pk).failure_reason == "not_ready"


def test_pending_and_running_instances_are_not_timed_out(tenant_owner, make_instance, settings) -> None:
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 600
    long_ago = timezone.now() - timedelta(days=2)
    tenant, user = tenant_owner.tenant, tenant_owner.user
    pending = make_instance(tenant, created_by=user, state="pending", state_changed_at=long_ago)
    running = make_instance(tenant, created_by=user, state_changed_at=long_ago, running_since=long_ago)
    assert timers.enforce_timers() == 0
    assert set(Instance.objects.filter(pk__in=[pending.pk, running.pk]).values_list("state", flat=True)) == {
        "pending",
        "running",
    }


def test_timers_count_billed_time_while_not_ready(tenant_owner, make_instance, settings) -> None:
    """auto_stop_after and max_runtime measure what the customer pays for, Ready or not."""
    settings.INSTANCE_READY_TIMEOUT_SECONDS = 7200
    now = timezone.now()
    tenant, user = tenant_owner.tenant, tenant_owner.user
    provisioning = make_instance(
        tenant,
        created_by=user,
        state="provisioning",
        state_changed_at=now - timedelta(seconds=3600),
        auto_stop_after=3600,
        billing_since=now - timedelta(seconds=3600),
    )
    assert timers.enforce_timers(now=now) == 1
    provisioning.refresh_from_db()
    assert provisioning.state == "stopping"
    assert InstanceEvent.objects.get(instance=provisioning).reason == "auto_stop_after"
