"""Emails about instances, queued to the worker once the transaction that caused them commits."""

from typing import Any


def instance_failed(instance_id: Any) -> None:
    from apps.instances.tasks import send_instance_failed_email

    send_instance_failed_email.delay(str(instance_id))
