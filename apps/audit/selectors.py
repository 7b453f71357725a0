from typing import Any

from django.db.models import QuerySet

from apps.audit.models import AuditEvent


def audit_events_of(*, tenant: Any) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(tenant=tenant)
