"""since/until with any ISO 8601 offset compare in UTC: "-21:25" is valid ISO but outside PostgreSQL's
range, and was a 500 (found by tests/fuzz); a time that leaves the calendar in UTC is a 400."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _event(tenant, at: datetime) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant,
        actor_label="system:system",
        via="api",
        action="tenant.updated",
        target_type="tenants.tenant",
        target_id=str(tenant.pk),
        created_at=at,
    )


def test_offsets_beyond_postgresqls_range_are_converted_to_utc(owner):
    before = _event(owner.tenant, datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    after = _event(owner.tenant, datetime(2030, 1, 2, 12, 0, tzinfo=UTC))
    # 00:00-21:25 is 21:25Z the same day and 15:00-21:25 is 12:25Z the next: only the second event is between.
    response = owner.token_client().get(
        owner.url("/audit-events"), {"since": "2030-01-01T00:00-21:25", "until": "2030-01-01T15:00-21:25"}
    )
    assert response.status_code == 200, response.json()
    ids = [row["id"] for row in response.json()["results"]]
    assert ids == [after.pk]
    assert before.pk not in ids
    response = owner.token_client().get(owner.url("/audit-events"), {"since": "2030-01-01T15:00-21:25"})
    assert [row["id"] for row in response.json()["results"]] == []


def test_a_time_outside_the_calendar_in_utc_is_a_400(owner):
    response = owner.token_client().get(owner.url("/audit-events"), {"since": "0001-01-01T00:00:00+05:00"})
    assert response.status_code == 400
    assert "since" in response.json()["error"]["fields"]
