"""Billing's one way to stop a tenant's instances (apps/billing/stops.py): the runway loop, dunning and a
reversal below zero all stop through it, with billing's reason on every stop, acting as the system."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import limits, stops
from apps.billing.stops import StopReason, tenant_instances_stop
from apps.billing.stripe import dunning
from apps.billing.stripe.models import BillingStatus, StripeCustomer
from apps.instances.models import Instance, InstanceEvent
from apps.tenants.models import Tenant, TenantStatus
from tests.factories import TenantFactory
from tests.instances.helpers import Catalog, instance_row, seed

pytestmark = pytest.mark.django_db


def row(catalog: Catalog, tenant: Tenant, owner: Any, name: str, state: str = "running") -> Instance:
    started = timezone.now() - timedelta(minutes=5) if state == "running" else None
    return instance_row(
        tenant=tenant,
        instance_type=catalog.instance_type("gpu-h100x1"),
        region=catalog.us_east,
        created_by=owner,
        name=name,
        state=state,
        running_since=started,
    )


def stop_reasons(instance: Instance) -> list[str]:
    events = InstanceEvent.objects.filter(instance=instance, kind="action", name="stop")
    return list(events.values_list("reason", flat=True))


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every call of billing's stop service (tenant slug, reason); the real service still runs."""
    calls: list[tuple[str, str]] = []
    real = stops.tenant_instances_stop

    def recording(*, tenant: Tenant, reason: Any) -> list[Instance]:
        calls.append((tenant.slug, str(reason)))
        return real(tenant=tenant, reason=reason)

    monkeypatch.setattr(stops, "tenant_instances_stop", recording)
    return calls


def test_stops_every_stoppable_instance_of_the_tenant_with_billings_reason(make_actor: Any) -> None:
    catalog = seed()
    owner, other = make_actor(), make_actor()
    mine = {
        state: row(catalog, owner.tenant, owner.user, f"i-{state}", state)
        for state in ("running", "pending", "provisioning", "stopped", "failed")
    }
    elsewhere = row(catalog, other.tenant, other.user, "elsewhere")

    stopped = tenant_instances_stop(tenant=owner.tenant, reason=StopReason.INSUFFICIENT_FUNDS)

    assert {i.pk for i in stopped} == {mine[s].pk for s in ("running", "pending", "provisioning")}
    for state in ("running", "pending", "provisioning"):
        instance = Instance.objects.get(pk=mine[state].pk)
        assert instance.desired_state == "stopped", state
        assert stop_reasons(instance) == ["insufficient_funds"], state
    for state in ("stopped", "failed"):
        assert Instance.objects.get(pk=mine[state].pk).state == state and not stop_reasons(mine[state])
    assert Instance.objects.get(pk=elsewhere.pk).state == "running" and not stop_reasons(elsewhere)
    audits = AuditEvent.objects.filter(tenant=owner.tenant, action="instance.stop")
    assert audits.count() == 3
    assert all(a.actor_user_id is None and a.metadata["reason"] == "insufficient_funds" for a in audits)


def test_a_reason_that_is_not_billings_is_refused_before_anything_stops(make_actor: Any) -> None:
    catalog = seed()
    owner = make_actor()
    running = row(catalog, owner.tenant, owner.user, "trainer")

    with pytest.raises(ValueError, match="abuse"):
        tenant_instances_stop(tenant=owner.tenant, reason="abuse")

    assert Instance.objects.get(pk=running.pk).desired_state != "stopped" and not stop_reasons(running)


def test_the_runway_loop_stops_through_it(make_actor: Any, spy: list[tuple[str, str]]) -> None:
    catalog = seed()
    broke = make_actor(tenant=TenantFactory(credit=0))
    rich = make_actor(tenant=TenantFactory(credit=1000))
    row(catalog, broke.tenant, broke.user, "spent")
    row(catalog, rich.tenant, rich.user, "paid")

    assert limits.enforce_limits() == 1

    assert spy == [(broke.tenant.slug, "insufficient_funds")]


def test_dunning_stops_a_tenant_already_suspended_through_it(
    make_actor: Any, spy: list[tuple[str, str]]
) -> None:
    catalog = seed()
    owner = make_actor()
    Tenant.objects.filter(pk=owner.tenant.pk).update(status=TenantStatus.SUSPENDED, status_reason="Abuse")
    running = row(catalog, owner.tenant, owner.user, "trainer")
    StripeCustomer.objects.create(
        tenant=owner.tenant,
        customer_id=f"cus_{owner.tenant.slug}",
        billing_status=BillingStatus.PAST_DUE,
        past_due_since=timezone.now() - timedelta(days=30),
    )

    assert dunning.enforce_past_due() == 1

    assert spy == [(owner.tenant.slug, "payment_past_due")]
    assert stop_reasons(running) == ["payment_past_due"]
