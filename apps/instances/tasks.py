from celery import shared_task

from apps.instances import cluster_timers, timers

# reconcile_instance, queued on every change the operator acts on, is in apps/operator/tasks.py (its Celery
# name is still apps.instances.tasks.reconcile_instance).


@shared_task
def enforce_instance_timers() -> int:
    return timers.enforce_timers() + cluster_timers.enforce_cluster_timers()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_instance_failed_email(instance_id: str) -> int:
    """Tell whoever launched a failed instance, and the tenant's owners and admins, why it failed."""
    from apps.instances import emails

    return emails.send_failed(instance_id)
