from celery import shared_task

from apps.instances import reconcile


@shared_task(acks_late=True)
def reconcile_instance(instance_id: str) -> None:
    """The one entry point through which every change reaches the operator."""
    reconcile.reconcile_instance(instance_id)


@shared_task
def enforce_instance_timers() -> int:
    return reconcile.enforce_timers()
