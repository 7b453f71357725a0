"""Emails about tenants, queued to the worker once the transaction that caused them commits."""

from typing import Any


def send_invitation(invitation_id: Any, secret: str) -> None:
    from apps.tenants.tasks import send_invitation_email

    send_invitation_email.delay(str(invitation_id), secret)


def send_status_email(tenant_id: Any, kind: str, *, reason: str, instances: list[str]) -> None:
    """Tell the tenant's owners and admins it was suspended (`kind` "suspended", with the reason) or
    reactivated ("reactivated"), naming the instances the suspension stopped."""
    from apps.tenants.tasks import send_status_email as task

    task.delay(str(tenant_id), kind, reason, list(instances))
