from typing import Any

from django.db.models import Prefetch, QuerySet

from apps.accounts.models import SshKey
from apps.instances.models import Instance, InstanceEvent


def instances_of(*, tenant: Any) -> QuerySet[Instance]:
    return (
        Instance.objects.filter(tenant=tenant)
        .select_related("region", "instance_type", "gpu_type", "image")
        .prefetch_related(Prefetch("ssh_keys", queryset=SshKey.objects.only("id")))
    )


def events_of(*, instance: Instance) -> QuerySet[InstanceEvent]:
    return InstanceEvent.objects.filter(instance=instance)
