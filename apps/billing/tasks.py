from celery import shared_task

from apps.billing import metering
from apps.instances.models import Instance


@shared_task(acks_late=True)
def meter_instance(instance_id: str) -> int:
    instance = Instance.objects.select_related("instance_type").filter(pk=instance_id).first()
    return metering.meter_instance(instance) if instance is not None else 0


@shared_task(acks_late=True)
def meter_all() -> int:
    return metering.meter_all()
