from typing import Any

from django.db.models import Prefetch, QuerySet, Sum

from apps.storage.models import HOLDS_STORAGE, Volume, VolumeAttachment, VolumeEvent


def volumes_of(*, tenant: Any) -> QuerySet[Volume]:
    """The tenant's volumes, each with its attachments to instances that are not terminated."""
    live = VolumeAttachment.objects.live().select_related("instance")
    return (
        Volume.objects.filter(tenant=tenant)
        .select_related("region")
        .prefetch_related(Prefetch("attachments", queryset=live, to_attr="live_attachments"))
    )


def quota_usage_of(tenant: Any) -> dict[str, Any]:
    """What the tenant's volumes count against its quota (apps/quotas/usage.py; registered in
    StorageConfig.ready): the GiB of those holding storage."""
    held = Volume.objects.filter(tenant=tenant, state__in=list(HOLDS_STORAGE))
    return {"volume_gib": held.aggregate(total=Sum("size_gib", default=0))["total"]}


def events_of(*, volume: Volume) -> QuerySet[VolumeEvent]:
    return VolumeEvent.objects.filter(volume=volume)
