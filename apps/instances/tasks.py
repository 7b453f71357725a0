from celery import shared_task

from apps.instances import reconcile


@shared_task(acks_late=True)
def reconcile_instance(instance_id: str) -> None:
    """The one entry point through which every change reaches the operator."""
    reconcile.reconcile_instance(instance_id)


@shared_task
def enforce_instance_timers() -> int:
    return reconcile.enforce_timers()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_instance_failed_email(instance_id: str) -> int:
    """Tell whoever launched a failed instance, and the tenant's owners and admins, why it failed."""
    from apps.instances import emails

    return emails.send_failed(instance_id)
