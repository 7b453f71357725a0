from celery import shared_task

from apps.storage.objects import usage


@shared_task(acks_late=True)
def sample_buckets() -> int:
    return usage.sample_buckets()
