"""Emails about tenants, queued to the worker once the transaction that caused them commits."""

from typing import Any


def send_invitation(invitation_id: Any, secret: str) -> None:
    from apps.tenants.tasks import send_invitation_email

    send_invitation_email.delay(str(invitation_id), secret)
