from typing import Any

from celery import shared_task

from apps.operator import reconcile_instances, reconcile_volumes, tenant_namespaces

# The Celery names are those the tasks had before the operator was an app of its own, so messages queued
# under them (by a process of the previous release, or waiting in the broker) still run.


@shared_task(name="apps.instances.tasks.reconcile_instance", acks_late=True)
def reconcile_instance(instance_id: str, unless_moved_on_from: dict[str, Any] | None = None) -> None:
    """The one entry point through which every change reaches the operator. `unless_moved_on_from`: the
    fallback for a change ({"generation", "state"} it left), skipped if the instance has moved on since."""
    reconcile_instances.reconcile_instance(instance_id, unless_moved_on_from=unless_moved_on_from)


@shared_task(name="apps.storage.tasks.reconcile_volume", acks_late=True)
def reconcile_volume(volume_id: str) -> None:
    """The one entry point through which volume changes reach the cluster."""
    reconcile_volumes.reconcile_volume(volume_id)


@shared_task(name="apps.operator.tasks.apply_tenant_namespaces", acks_late=True)
def apply_tenant_namespaces(tenant_id: str) -> None:
    """A tenant's quota changed: its namespace objects follow, in every region where it has something."""
    tenant_namespaces.apply_tenant_namespaces(tenant_id)
