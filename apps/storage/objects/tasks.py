from celery import shared_task

from apps.storage.objects import access, s3, usage


@shared_task(acks_late=True)
def sample_buckets() -> int:
    rows = usage.sample_buckets()
    # The sizes just measured decide which tenants may write (the byte quota): apply that now rather than
    # at the next access check.
    access.enforce_access()
    return rows


@shared_task(acks_late=True)
def enforce_access() -> dict[str, int]:
    """The periodic access check: keys suspended or restored, writes blocked or unblocked."""
    return access.enforce_access()


@shared_task(
    acks_late=True,
    autoretry_for=(s3.Unavailable,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def reconcile_access(tenant_id: str) -> list[str]:
    """Queued when a tenant's status or funds changed: suspend or restore its keys at once."""
    return access.access_reconcile(tenant_id=tenant_id)
