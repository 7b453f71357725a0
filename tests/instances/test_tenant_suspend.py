"""Suspending a tenant stops its instances (staff suspension the same way as non-payment), and reactivating it
says which were stopped: they stay stopped until the customer starts them.

apps.tenants sends `tenant_suspended`; apps.instances stops the instances in its receiver, through the one
service billing also uses (`instances_stop_all`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.instances.models import Instance, InstanceEvent
from apps.instances.services import instances_stop_all
from apps.tenants import services as tenant_services
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.conftest import Actor


@pytest.fixture
def fleet(
    tenant_owner: Actor, make_instance: Callable[..., Instance], make_actor: Callable[..., Actor]
) -> dict[str, Instance]:
    owner, tenant = tenant_owner.user, tenant_owner.tenant
    started = timezone.now() - timedelta(minutes=10)
    other = make_actor()
    return {
        "running": make_instance(tenant, created_by=owner, name="trainer", running_since=started),
        "pending": make_instance(tenant, created_by=owner, name="queued", state="pending"),
        "provisioning": make_instance(tenant, created_by=owner, name="booting", state="provisioning"),
        "stopped": make_instance(
            tenant, created_by=owner, name="idle", state="stopped", desired_state="stopped"
        ),
        "failed": make_instance(tenant, created_by=owner, name="broken", state="failed"),
        "elsewhere": make_instance(other.tenant, created_by=other.user, running_since=started),
    }


def stop_reasons(instance: Instance) -> list[str]:
    return list(
        InstanceEvent.objects.filter(instance=instance, kind="action", name="stop").values_list(
            "reason", flat=True
        )
    )


def test_staff_suspension_stops_every_instance_that_runs_or_is_about_to(
    tenant_owner: Actor, fleet: dict[str, Instance], staff_user
) -> None:
    tenant = tenant_owner.tenant

    tenant_services.tenant_suspend(actor=staff_user, tenant=tenant, reason="Abuse report #12")

    for key in ("running", "pending", "provisioning"):
        instance = Instance.objects.get(pk=fleet[key].pk)
        assert (instance.state, instance.desired_state) == ("stopping", "stopped"), key
        assert stop_reasons(instance) == ["tenant_suspended"], key
    running = Instance.objects.get(pk=fleet["running"].pk)
    assert running.running_since is None and 599 <= running.accrued_running_seconds <= 660  # clock stopped
    for key in ("stopped", "failed"):
        assert Instance.objects.get(pk=fleet[key].pk).state == fleet[key].state and not stop_reasons(
            fleet[key]
        )
    elsewhere = Instance.objects.get(pk=fleet["elsewhere"].pk)
    assert elsewhere.state == "running" and not stop_reasons(elsewhere)  # another tenant is untouched

    stopped = [
        {"id": str(fleet[k].pk), "name": fleet[k].name} for k in ("running", "pending", "provisioning")
    ]
    stopped.sort(key=lambda item: item["id"])
    tenant.refresh_from_db()
    assert sorted(tenant.suspension_stopped_instances, key=lambda item: item["id"]) == stopped
    event = AuditEvent.objects.get(tenant=tenant, action="tenant.suspend")
    assert event.actor_user_id == staff_user.pk
    assert sorted(event.metadata["stopped_instances"], key=lambda item: item["id"]) == stopped
    stop_audits = AuditEvent.objects.filter(tenant=tenant, action="instance.stop")
    assert stop_audits.count() == 3 and {e.actor_user_id for e in stop_audits} == {staff_user.pk}


def test_reactivation_reports_what_the_suspension_stopped_and_starts_nothing(
    tenant_owner: Actor,
    fleet: dict[str, Instance],
    make_actor: Callable[..., Actor],
    django_capture_on_commit_callbacks,
) -> None:
    tenant = tenant_owner.tenant
    admin = make_actor(Role.ADMIN, tenant=tenant)
    make_actor(Role.MEMBER, tenant=tenant)  # not emailed
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.tenant_suspend(actor=None, tenant=tenant, reason="Abuse report #12")
    [suspended_mail] = mail.outbox
    assert sorted(suspended_mail.to) == sorted([tenant_owner.user.email, admin.user.email])
    assert "Abuse report #12" in suspended_mail.body
    for name in ("trainer", "queued", "booting"):
        assert f"  - {name}\n" in suspended_mail.body
    assert "idle" not in suspended_mail.body
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.tenant_reactivate(actor=None, tenant=tenant)

    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.ACTIVE
    for key in ("running", "pending", "provisioning"):
        instance = Instance.objects.get(pk=fleet[key].pk)
        # not started again (the reconcile queued on commit, with no cluster here, may have finished the stop)
        assert instance.state in ("stopping", "stopped") and instance.desired_state == "stopped"
    event = AuditEvent.objects.get(tenant=tenant, action="tenant.reactivate")
    assert {item["name"] for item in event.metadata["stopped_by_suspension"]} == {
        "trainer",
        "queued",
        "booting",
    }
    [reactivated_mail] = mail.outbox
    assert sorted(reactivated_mail.to) == sorted([tenant_owner.user.email, admin.user.email])
    assert "stay stopped" in reactivated_mail.body
    for name in ("trainer", "queued", "booting"):
        assert f"  - {name}\n" in reactivated_mail.body


def test_suspending_again_keeps_what_the_first_suspension_stopped(
    tenant_owner: Actor, fleet: dict[str, Instance]
) -> None:
    tenant = tenant_owner.tenant
    tenant_services.tenant_suspend(actor=None, tenant=tenant, reason="first")

    tenant_services.tenant_suspend(actor=None, tenant=tenant, reason="second, with more detail")

    tenant.refresh_from_db()
    assert {item["name"] for item in tenant.suspension_stopped_instances} == {"trainer", "queued", "booting"}
    second = AuditEvent.objects.filter(tenant=tenant, action="tenant.suspend").order_by("-id").first()
    assert second.metadata["stopped_instances"] == []  # nothing was left running


def test_reactivating_a_tenant_suspended_with_nothing_running_reports_nothing(
    tenant_owner: Actor, django_capture_on_commit_callbacks
) -> None:
    tenant = tenant_owner.tenant
    with django_capture_on_commit_callbacks(execute=True):
        tenant_services.tenant_suspend(actor=None, tenant=tenant, reason="Card declined")
        tenant_services.tenant_reactivate(actor=None, tenant=tenant)

    event = AuditEvent.objects.get(tenant=tenant, action="tenant.reactivate")
    assert event.metadata["stopped_by_suspension"] == []
    assert "The suspension stopped no instances." in mail.outbox[-1].body


def test_stop_all_skips_an_instance_that_fails_and_stops_the_rest(
    tenant_owner: Actor, fleet: dict[str, Instance], monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.instances import services

    real = services.instance_act
    broken = fleet["pending"].pk

    def flaky(**kwargs):
        if kwargs["instance"].pk == broken:
            raise RuntimeError("the database said no")
        return real(**kwargs)

    monkeypatch.setattr(services, "instance_act", flaky)

    stopped = instances_stop_all(tenant=tenant_owner.tenant, actor=None, reason="insufficient_funds")

    assert {i.pk for i in stopped} == {fleet["running"].pk, fleet["provisioning"].pk}
    assert Instance.objects.get(pk=broken).state == "pending"
