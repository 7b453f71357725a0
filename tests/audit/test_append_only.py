"""Audit events are append-only: the model refuses changes and the database refuses UPDATE and DELETE."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from tests.conftest import Actor


@pytest.fixture
def event(owner: Actor) -> AuditEvent:
    return audit_record(actor=owner.user, action="test.thing", tenant=owner.tenant, changes={"a": 1})


def test_saving_an_existing_event_raises(event: AuditEvent) -> None:
    event.action = "test.rewritten"

    with pytest.raises(RuntimeError, match="append-only"):
        event.save()

    assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"


def test_deleting_an_event_raises(event: AuditEvent) -> None:
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_queryset_update_is_refused_by_the_database(event: AuditEvent) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="test.rewritten")

    assert AuditEvent.objects.get(pk=event.pk).action == "test.thing"


def test_queryset_delete_is_refused_by_the_database(event: AuditEvent) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'test.rewritten' WHERE id = %s",
        "UPDATE audit_auditevent SET changes = '{}'::jsonb WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ],
)
def test_raw_sql_update_and_delete_are_refused(event: AuditEvent, sql: str) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [event.pk])

    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.changes) == ("test.thing", {"a": 1})


def test_inserting_is_allowed(owner: Actor) -> None:
    before = AuditEvent.objects.count()

    audit_record(actor=owner.user, action="test.other", tenant=owner.tenant)

    assert AuditEvent.objects.count() == before + 1
