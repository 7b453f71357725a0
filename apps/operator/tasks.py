from typing import Any

from celery import shared_task
from django.conf import settings

from apps.operator import reconcile_instances, reconcile_volumes, tenant_namespaces

# The Celery names are those the tasks had before the operator was an app of its own, so messages queued
# under them (by a process of the previous release, or waiting in the broker) still run.


@shared_task(name="apps.instances.tasks.reconcile_instance", acks_late=True)
def reconcile_instance(
    instance_id: str, unless_moved_on_from: dict[str, Any] | None = None, waits: int = 0
) -> None:
    """The one entry point through which every change reaches the operator. `unless_moved_on_from`: this is
    the fallback of a change ({"generation", "state"} it left; receivers.py): skipped once the change was
    acted on, and put off, with doubling delays, while a leader of the region has it
    (reconcile_instances.fallback_due); after RECONCILE_FALLBACK_WAITS of those it reconciles regardless."""
    if unless_moved_on_from is not None:
        due = reconcile_instances.fallback_due(instance_id, unless_moved_on_from)
        if due == reconcile_instances.Fallback.SKIP:
            return
        if due == reconcile_instances.Fallback.WAIT and waits < settings.RECONCILE_FALLBACK_WAITS:
            reconcile_instance.apply_async(
                (instance_id,),
                kwargs={"unless_moved_on_from": unless_moved_on_from, "waits": waits + 1},
                countdown=settings.RECONCILE_FALLBACK_SECONDS * 2 ** (waits + 1),
            )
            return
    reconcile_instances.reconcile_instance(instance_id)


@shared_task(name="apps.storage.tasks.reconcile_volume", acks_late=True)
def reconcile_volume(volume_id: str) -> None:
    """The one entry point through which volume changes reach the cluster."""
    reconcile_volumes.reconcile_volume(volume_id)


@shared_task(name="apps.operator.tasks.apply_tenant_namespaces", acks_late=True)
def apply_tenant_namespaces(tenant_id: str) -> None:
    """A tenant's quota changed: its namespace objects follow, in every region where it has something."""
    tenant_namespaces.apply_tenant_namespaces(tenant_id)
