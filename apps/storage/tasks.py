from celery import shared_task

from apps.storage import closing
from apps.storage.objects.services import StorageUnavailable

# reconcile_volume, queued on every change the cluster must follow, is apps/operator/tasks.py's (its Celery
# name is still apps.storage.tasks.reconcile_volume).


@shared_task(
    acks_late=True,
    autoretry_for=(StorageUnavailable,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=12,
)
def close_tenant_storage(tenant_id: str) -> int:
    """Queued when a tenant is closed: revoke its access keys on the object storage service (retried while
    the service is unavailable; the hourly sweep finishes what the retries could not)."""
    return closing.finish_close(tenant_id)


@shared_task(acks_late=True)
def sweep_closed_tenants() -> dict[str, int]:
    return closing.sweep_closed_tenants()
