from celery import shared_task

from apps.storage import closing, reconcile
from apps.storage.objects.services import StorageUnavailable


@shared_task(acks_late=True)
def reconcile_volume(volume_id: str) -> None:
    """The one entry point through which volume changes reach the cluster."""
    reconcile.reconcile_volume(volume_id)


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
