"""An instance whose machine was lost (services.instance_node_lost): billing stops at the machine's last
sign of life, the instance starts again under a new generation, and the event and message say why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.instances import services
from apps.instances.models import InstanceEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def running(make_instance, tenant_owner):
    started = timezone.now() - timedelta(minutes=10)
    return make_instance(
        tenant_owner.tenant,
        created_by=tenant_owner.user,
        state="running",
        billing_since=started,
        running_since=started,
        state_changed_at=started,
    )


def test_billing_stops_at_the_loss_and_the_instance_starts_again(running) -> None:
    lost_at = timezone.now() - timedelta(minutes=2)

    moved = services.instance_node_lost(instance_id=running.pk, node="n7", zone="us-east-1b", lost_at=lost_at)

    assert moved is not None
    moved.refresh_from_db()
    assert moved.state == "starting" and moved.generation == running.generation + 1
    assert moved.billing_since is None and moved.accrued_billed_seconds == 8 * 60
    assert moved.running_since is None and moved.accrued_running_seconds == 8 * 60
    assert "n7 (zone us-east-1b), stopped working" in moved.state_message
    assert "starting again on a ready machine in another zone" in moved.state_message
    event = InstanceEvent.objects.get(instance=moved, name="node_lost")
    assert event.created_at == lost_at and event.reason == "node_lost" and not event.billable
    assert (event.from_state, event.to_state) == ("running", "starting")


def test_a_pinned_instance_waits_for_its_zone(running) -> None:
    running.zone = "us-east-1b"
    running.save(update_fields=["zone"])

    moved = services.instance_node_lost(
        instance_id=running.pk, node="n7", zone="us-east-1b", lost_at=timezone.now()
    )

    assert moved is not None and "waits for a machine in zone us-east-1b" in moved.state_message


def test_a_loss_before_the_last_state_change_bills_from_that_change_and_a_repeat_changes_nothing(
    running,
) -> None:
    moved = services.instance_node_lost(
        instance_id=running.pk, node="n7", zone="", lost_at=running.state_changed_at - timedelta(hours=1)
    )
    assert moved is not None and moved.accrued_billed_seconds == 0  # never before it started
    assert "stopped working" in moved.state_message and "zone" not in moved.state_message

    moved.state = "stopped"
    moved.save(update_fields=["state"])
    assert (
        services.instance_node_lost(instance_id=running.pk, node="n7", zone="", lost_at=timezone.now())
        is None
    )
