from typing import Any

from django.db.models import Prefetch, QuerySet

from apps.instances.states import State
from apps.storage.models import Volume, VolumeAttachment, VolumeEvent


def volumes_of(*, tenant: Any) -> QuerySet[Volume]:
    """The tenant's volumes, each with its attachments to instances that are not terminated."""
    live = VolumeAttachment.objects.exclude(instance__state=State.TERMINATED).select_related("instance")
    return (
        Volume.objects.filter(tenant=tenant)
        .select_related("region")
        .prefetch_related(Prefetch("attachments", queryset=live, to_attr="live_attachments"))
    )


def events_of(*, volume: Volume) -> QuerySet[VolumeEvent]:
    return VolumeEvent.objects.filter(volume=volume)
