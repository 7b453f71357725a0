from django.db.models import QuerySet

from apps.audit.models import AuditEvent
from apps.tenants.models import Tenant


def audit_events_of(*, tenant: Tenant) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(tenant=tenant)
