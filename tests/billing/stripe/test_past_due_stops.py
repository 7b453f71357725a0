"""Non-payment stops instances through the suspension, like staff suspension: the tenant's suspension records
what it stopped (each stop with the reason payment_past_due), and a tenant staff had already suspended with
something still running is stopped too. Stripe is not called: the customer's past-due state is set
directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.billing.stripe import dunning
from apps.billing.stripe.models import BillingStatus, StripeCustomer
from apps.instances.models import Instance, InstanceEvent
from apps.tenants.models import Tenant, TenantStatus
from tests.instances.helpers import instance_row, seed

pytestmark = pytest.mark.django_db


def past_due_tenant(make_actor: Any, **tenant_fields: Any) -> tuple[Tenant, Instance]:
    catalog = seed()
    owner = make_actor()
    tenant = owner.tenant
    if tenant_fields:
        Tenant.objects.filter(pk=tenant.pk).update(**tenant_fields)
    StripeCustomer.objects.create(
        tenant=tenant,
        customer_id=f"cus_{tenant.slug}",
        billing_status=BillingStatus.PAST_DUE,
        past_due_since=timezone.now() - timedelta(days=30),
    )
    running = instance_row(
        tenant=tenant,
        instance_type=catalog.instance_type("gpu-h100x1"),
        region=catalog.us_east,
        created_by=owner.user,
        name="trainer",
        running_since=timezone.now() - timedelta(minutes=5),
    )
    return tenant, running


def stop_reasons(instance: Instance) -> list[str]:
    events = InstanceEvent.objects.filter(instance=instance, kind="action", name="stop")
    return list(events.values_list("reason", flat=True))


def test_past_due_suspends_and_the_suspension_stops_and_records_the_instances(make_actor: Any) -> None:
    tenant, running = past_due_tenant(make_actor)

    assert dunning.enforce_past_due() == 1

    tenant.refresh_from_db()
    running.refresh_from_db()
    assert (tenant.status, tenant.status_reason) == (TenantStatus.SUSPENDED, dunning.PAST_DUE_REASON)
    assert running.desired_state == "stopped" and stop_reasons(running) == ["payment_past_due"]
    assert tenant.suspension_stopped_instances == [{"id": str(running.pk), "name": "trainer"}]


def test_a_tenant_staff_suspended_earlier_is_stopped_all_the_same(make_actor: Any) -> None:
    # Suspended before suspensions stopped instances: something still runs.
    tenant, running = past_due_tenant(make_actor, status=TenantStatus.SUSPENDED, status_reason="Abuse")

    assert dunning.enforce_past_due() == 1

    tenant.refresh_from_db()
    running.refresh_from_db()
    assert tenant.status_reason == "Abuse"  # staff's reason stays
    assert running.desired_state == "stopped" and stop_reasons(running) == ["payment_past_due"]
    assert StripeCustomer.objects.get(tenant=tenant).billing_status == BillingStatus.SUSPENDED
