from typing import Any

from django.db.models import Prefetch, QuerySet

from apps.accounts.models import SshKey
from apps.instances.models import Instance, InstanceEvent
from apps.storage.models import VolumeAttachment


def instances_of(*, tenant: Any) -> QuerySet[Instance]:
    return (
        Instance.objects.filter(tenant=tenant)
        .select_related("region", "instance_type", "gpu_type", "image")
        .prefetch_related(
            Prefetch("ssh_keys", queryset=SshKey.objects.only("id")),
            Prefetch("volume_attachments", queryset=VolumeAttachment.objects.select_related("volume")),
        )
    )


def events_of(*, instance: Instance) -> QuerySet[InstanceEvent]:
    return InstanceEvent.objects.filter(instance=instance)


def recent_events_of(*, tenant: Any, limit: int = 10) -> QuerySet[InstanceEvent]:
    """The tenant's latest instance events, newest first (the console dashboard)."""
    return (
        InstanceEvent.objects.filter(instance__tenant=tenant)
        .select_related("instance")
        .order_by("-created_at", "-id")[:limit]
    )


def pod_log_tail(*, instance: Instance, tail_lines: int = 200) -> str | None:
    """The last lines of the instance's pod log, or None when there is none to read: no cluster connection,
    no pod, or any error or timeout on the way (kwok pods have no logs). Never raises."""
    from apps.instances.kube import names
    from apps.instances.kube.client import api_client, has_cluster
    from apps.instances.kube.cluster import Cluster

    if not has_cluster(instance.region):
        return None
    try:
        cluster = Cluster(api_client(instance.region))
        text = cluster.read_pod_log(
            names.namespace_name(instance.tenant_id, instance.tenant.slug),
            names.instance_object_name(instance.pk),
            tail_lines=tail_lines,
        )
    except Exception:  # logs are a convenience: any failure reads as "no logs yet"
        return None
    return text or None
