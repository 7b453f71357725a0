"""Emails about quota requests, queued once the transaction commits."""

from typing import Any


def quota_request_created(request_id: Any) -> None:
    from apps.quotas.tasks import send_quota_request_email

    send_quota_request_email.delay(str(request_id), "created")


def quota_request_decided(request_id: Any) -> None:
    from apps.quotas.tasks import send_quota_request_email

    send_quota_request_email.delay(str(request_id), "decided")
