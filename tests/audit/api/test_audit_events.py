"""GET /tenants/{slug}/audit-events: the tenant's own events, for admins and owners, with filters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.factories import UserFactory
from tests.tenants.support import assert_error

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _event(tenant: Any, action: str, actor: Any = None, at: datetime = T0, **extra: Any) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_user=actor,
        actor_label=actor.email if actor else "system:system",
        via="api",
        action=action,
        target_type=extra.pop("target_type", "tenants.tenant"),
        target_id=str(tenant.pk),
        created_at=at,
        **extra,
    )


@pytest.fixture
def events(owner: Actor, make_actor: Callable[..., Actor]) -> dict[str, AuditEvent]:
    ada = UserFactory(email="ada@example.com")
    stranger = make_actor(Role.OWNER)
    return {
        "create": _event(owner.tenant, "tenant.create", owner.user, T0),
        "role": _event(
            owner.tenant, "member.change_role", ada, T0 + timedelta(hours=1), target_type="tenants.membership"
        ),
        "remove": _event(owner.tenant, "member.remove", ada, T0 + timedelta(hours=2)),
        "token": _event(owner.tenant, "token.create", owner.user, T0 + timedelta(hours=3)),
        "theirs": _event(stranger.tenant, "member.remove", stranger.user, T0 + timedelta(hours=2)),
    }


def _ids(owner: Actor, query: str = "") -> list[int]:
    response = owner.token_client().get(owner.url(f"/audit-events{query}"))
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_lists_only_this_tenants_events_newest_first(owner: Actor, events: dict[str, AuditEvent]) -> None:
    ids = _ids(owner, "?since=2030-01-01T00:00:00Z")

    assert ids == [events[k].pk for k in ("token", "remove", "role", "create")]


def test_response_shape(owner: Actor, events: dict[str, AuditEvent]) -> None:
    response = owner.token_client().get(owner.url("/audit-events?action=member.change_role"))

    body = response.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["action"] == "member.change_role"
    assert row["actor"] == "ada@example.com"
    assert row["target_type"] == "tenants.membership"
    assert set(row) >= {
        "id",
        "created_at",
        "actor",
        "token",
        "via",
        "changes",
        "metadata",
        "ip",
        "request_id",
    }


def test_filter_by_exact_action(owner: Actor, events: dict[str, AuditEvent]) -> None:
    assert _ids(owner, "?action=member.remove") == [events["remove"].pk]
    assert _ids(owner, "?action=member") == []  # exact, not a prefix


def test_filter_by_action_prefix(owner: Actor, events: dict[str, AuditEvent]) -> None:
    assert _ids(owner, "?action=member.*") == [events["remove"].pk, events["role"].pk]


def test_filter_by_actor(owner: Actor, events: dict[str, AuditEvent]) -> None:
    assert _ids(owner, "?actor=ADA@example.com") == [events["remove"].pk, events["role"].pk]
    assert _ids(owner, "?actor=nobody@example.com") == []


def test_filter_by_target_type(owner: Actor, events: dict[str, AuditEvent]) -> None:
    assert _ids(owner, "?target_type=tenants.membership") == [events["role"].pk]


def test_filter_by_time(owner: Actor, events: dict[str, AuditEvent]) -> None:
    since = "2030-01-01T13:00:00Z"
    until = "2030-01-01T15:00:00Z"

    assert _ids(owner, f"?since={since}&until={until}") == [events["remove"].pk, events["role"].pk]
    assert _ids(owner, f"?until={since}")[-1:] == [events["create"].pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since"), ("until=2030-13-45", "until"), ("action=" + "a" * 65, "action")],
)
def test_bad_filter_values_are_400_naming_the_field(
    owner: Actor, events: dict[str, AuditEvent], query: str, field: str
) -> None:
    response = owner.token_client().get(owner.url(f"/audit-events?{query}"))

    assert_error(response, 400, "invalid", field=field)


def test_pagination_is_bounded(owner: Actor) -> None:
    for n in range(3):
        _event(owner.tenant, f"test.{n}", owner.user)

    body = owner.token_client().get(owner.url("/audit-events?limit=2")).json()
    huge = owner.token_client().get(owner.url("/audit-events?limit=100000")).json()

    assert len(body["results"]) == 2
    assert body["next"] is not None
    assert len(huge["results"]) == huge["count"] <= 200


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_admins_and_owners_read_the_log(make_actor: Callable[..., Actor], role: str) -> None:
    actor = make_actor(role)
    _event(actor.tenant, "tenant.update", actor.user)

    assert len(_ids(actor)) == 1


@pytest.mark.parametrize("role", [Role.MEMBER, Role.BILLING, Role.VIEWER])
def test_other_roles_cannot_read_the_log(make_actor: Callable[..., Actor], role: str) -> None:
    actor = make_actor(role)

    assert_error(actor.token_client().get(actor.url("/audit-events")), 403, "role_forbidden")


def test_a_token_needs_tenant_admin(make_actor: Callable[..., Actor]) -> None:
    actor = make_actor(Role.OWNER, token_scopes=("tenant:read",))

    error = assert_error(actor.token_client().get(actor.url("/audit-events")), 403, "missing_scope")
    assert "tenant:admin" in error["message"]


def test_another_tenants_log_is_404(owner: Actor, make_actor: Callable[..., Actor]) -> None:
    stranger = make_actor(Role.OWNER)

    assert_error(owner.session_client().get(stranger.url("/audit-events")), 404, "not_found")
    assert_error(owner.token_client().get(stranger.url("/audit-events")), 404, "not_found")


def test_the_log_is_read_only(owner: Actor) -> None:
    for method in ("post", "put", "patch", "delete"):
        assert_error(getattr(owner.token_client(), method)(owner.url("/audit-events"), {}), 405)
