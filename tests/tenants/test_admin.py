"""Staff manage tenants in the Django admin: suspend (with a reason), reactivate, close. All audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.tenants import services
from apps.tenants.models import Tenant, TenantStatus
from tests.conftest import Actor, login_staff
from tests.factories import UserFactory

CHANGELIST = "/admin/tenants/tenant/"
REQUEST_ID = "admin-req-0001"


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser(email="staff@example.com", password="x-staff-password-1")


@pytest.fixture
def admin_client(staff: User) -> Client:
    return login_staff(Client(HTTP_X_REQUEST_ID=REQUEST_ID), staff)


def _action(client: Client, action: str, tenants: list[Tenant], **extra: str) -> Any:
    data = {"action": action, "_selected_action": [str(t.pk) for t in tenants], **extra}
    return client.post(CHANGELIST, data)


def test_suspend_asks_for_a_reason_first(admin_client: Client, owner: Actor) -> None:
    response = _action(admin_client, "suspend", [owner.tenant])

    assert response.status_code == 200
    assert b'name="reason"' in response.content
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.ACTIVE
    assert not AuditEvent.objects.filter(action="tenant.suspend").exists()


def test_suspend_without_a_reason_is_refused(admin_client: Client, owner: Actor) -> None:
    response = _action(admin_client, "suspend", [owner.tenant], apply="1", reason="")

    assert response.status_code == 200  # the form again, with its error
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.ACTIVE


def test_suspend_with_a_reason(admin_client: Client, staff: User, owner: Actor) -> None:
    response = _action(admin_client, "suspend", [owner.tenant], apply="1", reason="Card declined")

    assert response.status_code == 302
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.SUSPENDED
    assert owner.tenant.status_reason == "Card declined"
    event = AuditEvent.objects.get(action="tenant.suspend")
    assert (event.via, event.actor_user, event.tenant) == ("admin", staff, owner.tenant)
    assert event.request_id == REQUEST_ID
    assert event.ip == "127.0.0.1"
    assert event.changes["status"] == {"from": "active", "to": "suspended"}
    assert event.changes["status_reason"] == {"from": "", "to": "Card declined"}


def test_reactivate(admin_client: Client, staff: User, owner: Actor) -> None:
    services.tenant_suspend(actor=None, tenant=owner.tenant, reason="Card declined")

    response = _action(admin_client, "reactivate", [owner.tenant])

    assert response.status_code == 302
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.ACTIVE
    assert owner.tenant.status_reason == ""
    event = AuditEvent.objects.get(action="tenant.reactivate")
    assert (event.via, event.actor_user) == ("admin", staff)
    assert event.changes["status"] == {"from": "suspended", "to": "active"}


def test_close_revokes_tokens(admin_client: Client, staff: User, owner: Actor) -> None:
    response = _action(admin_client, "close", [owner.tenant], apply="1", reason="Fraud")

    assert response.status_code == 302
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.CLOSED
    owner.token.refresh_from_db()
    assert owner.token.revoked_at is not None
    event = AuditEvent.objects.get(action="tenant.close")
    assert (event.via, event.actor_user, event.tenant) == ("admin", staff, owner.tenant)


def test_a_closed_tenant_cannot_be_reactivated(admin_client: Client, owner: Actor) -> None:
    services.tenant_close(actor=None, tenant=owner.tenant, reason="Fraud")

    response = _action(admin_client, "reactivate", [owner.tenant])

    assert response.status_code == 302
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.CLOSED
    assert not AuditEvent.objects.filter(action="tenant.reactivate").exists()


def test_actions_apply_to_every_selected_tenant(admin_client: Client, make_actor: Any) -> None:
    tenants = [make_actor().tenant, make_actor().tenant]

    _action(admin_client, "suspend", tenants, apply="1", reason="Maintenance")

    assert set(Tenant.objects.values_list("status", flat=True)) == {TenantStatus.SUSPENDED}
    assert AuditEvent.objects.filter(action="tenant.suspend").count() == 2


def test_non_staff_cannot_use_the_admin(owner: Actor) -> None:
    client = Client()
    client.force_login(UserFactory())

    response = _action(client, "close", [owner.tenant], apply="1", reason="x")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    owner.tenant.refresh_from_db()
    assert owner.tenant.status == TenantStatus.ACTIVE
