from celery import shared_task

from apps.operator import reconcile_instances, reconcile_volumes, tenant_namespaces

# The Celery names are those the tasks had before the operator was an app of its own, so messages queued
# under them (by a process of the previous release, or waiting in the broker) still run.


@shared_task(name="apps.instances.tasks.reconcile_instance", acks_late=True)
def reconcile_instance(instance_id: str) -> None:
    """The one entry point through which every change reaches the operator."""
    reconcile_instances.reconcile_instance(instance_id)


@shared_task(name="apps.storage.tasks.reconcile_volume", acks_late=True)
def reconcile_volume(volume_id: str) -> None:
    """The one entry point through which volume changes reach the cluster."""
    reconcile_volumes.reconcile_volume(volume_id)


@shared_task(name="apps.operator.tasks.apply_tenant_namespaces", acks_late=True)
def apply_tenant_namespaces(tenant_id: str) -> None:
    """A tenant's quota changed: its namespace objects follow, in every region where it has something."""
    tenant_namespaces.apply_tenant_namespaces(tenant_id)
