"""Closing a tenant terminates its instances: a closed tenant runs nothing and is billed for nothing more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.instances.models import Instance, InstanceEvent
from apps.tenants import services as tenant_services
from tests.conftest import Actor


def test_closing_a_tenant_terminates_every_live_instance(
    tenant_owner: Actor, make_instance: Callable[..., Instance], make_actor: Callable[..., Actor]
) -> None:
    started = timezone.now() - timedelta(minutes=10)
    owner, tenant = tenant_owner.user, tenant_owner.tenant
    running = make_instance(tenant, created_by=owner, running_since=started)
    stopped = make_instance(tenant, created_by=owner, state="stopped", desired_state="stopped")
    gone = make_instance(tenant, created_by=owner, state="terminated", desired_state="terminated")
    other = make_actor()
    elsewhere = make_instance(other.tenant, created_by=other.user, running_since=started)

    tenant_services.tenant_close(actor=None, tenant=tenant, reason="Customer left")

    for instance in (running, stopped):
        instance.refresh_from_db()
        assert (instance.state, instance.desired_state) == ("terminating", "terminated")
        event = InstanceEvent.objects.filter(instance=instance, kind="action").get()
        assert (event.name, event.reason) == ("terminate", "tenant closed")
    assert running.running_since is None  # the clock stopped at the close
    assert 599 <= running.accrued_running_seconds <= 660
    gone.refresh_from_db()
    assert gone.state == "terminated" and not InstanceEvent.objects.filter(instance=gone).exists()
    elsewhere.refresh_from_db()
    assert elsewhere.state == "running" and elsewhere.running_since is not None
    assert AuditEvent.objects.filter(tenant=tenant, action="instance.terminate").count() == 2
