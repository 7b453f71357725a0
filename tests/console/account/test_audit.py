"""The audit log: who may read it, its filters and their errors, pages of fifty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.console.account.helpers import MakeActor, browser, html, page_url
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def _event(tenant: Any, action: str, actor: str, at: datetime) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_label=actor,
        via="api",
        action=action,
        target_type="t",
        target_id="1",
        created_at=at,
    )


def test_the_audit_log_is_for_admins_and_owners(make_actor: MakeActor) -> None:
    admin = make_actor(Role.ADMIN)
    _event(admin.tenant, "member.change_role", "ada@example.com", timezone.now())
    assert "member.change_role" in html(browser(admin).get(page_url("audit", admin)))
    for role in (Role.MEMBER, Role.VIEWER, Role.BILLING):
        other = make_actor(role, tenant=admin.tenant)
        response = browser(other).get(page_url("audit", other))
        assert response.status_code == 403
        assert "audit.read" in html(response)


def test_audit_filters_by_action_prefix_actor_and_days(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    elsewhere = TenantFactory()
    day = datetime(2026, 5, 10, 12, tzinfo=UTC)
    _event(owner.tenant, "member.change_role", "ada@example.com", day)
    _event(owner.tenant, "member.remove", "bob@example.com", day + timedelta(days=1))
    _event(owner.tenant, "token.create", "ada@example.com", day + timedelta(days=2))
    _event(elsewhere, "member.other_tenant", "ada@example.com", day)
    client = browser(owner)

    def actions(**query: str) -> list[str]:
        response = client.get(page_url("audit", owner), query)
        assert response.status_code == 200
        return [event.action for event in response.context["page_obj"]]

    assert actions(action="member.", since="2026-05-01", until="2026-05-31") == [
        "member.remove",
        "member.change_role",
    ]
    assert actions(actor="ADA@example.com", since="2026-05-01", until="2026-05-31") == [
        "token.create",
        "member.change_role",
    ]
    assert actions(since="2026-05-11", until="2026-05-11") == ["member.remove"]  # until is inclusive
    assert "member.other_tenant" not in html(client.get(page_url("audit", owner)))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "Enter a date as YYYY-MM-DD."),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "Must not be before since."),
    ],
)
def test_audit_filter_errors_are_shown(owner: Actor, query: dict[str, str], message: str) -> None:
    response = browser(owner).get(page_url("audit", owner), query)
    assert response.status_code == 400
    assert message in html(response)


def test_audit_log_pages_fifty_events_and_keeps_the_filters(owner: Actor) -> None:
    base = datetime(2026, 6, 1, tzinfo=UTC)
    for n in range(120):
        _event(owner.tenant, f"instance.n{n:03d}", "ada@example.com", base + timedelta(minutes=n))
    client = browser(owner)

    first = client.get(page_url("audit", owner), {"action": "instance."})
    assert len(first.context["page_obj"]) == 50
    assert first.context["page_obj"].paginator.num_pages == 3
    assert "instance.n119" in html(first) and "instance.n069" not in html(first)
    assert 'href="?action=instance.&amp;page=2"' in html(first)

    last = client.get(page_url("audit", owner), {"action": "instance.", "page": "3"})
    assert [e.action for e in last.context["page_obj"]][-1] == "instance.n000"
    assert len(last.context["page_obj"]) == 20
    assert "Page 3 of 3 (120 events)" in html(last)
