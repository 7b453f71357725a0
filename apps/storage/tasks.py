from celery import shared_task

from apps.storage import reconcile


@shared_task(acks_late=True)
def reconcile_volume(volume_id: str) -> None:
    """The one entry point through which volume changes reach the cluster."""
    reconcile.reconcile_volume(volume_id)
