"""What the operator does when instances and storage announce a change (connected in OperatorConfig.ready):
each is sent once the change has committed, and queues the reconcile that brings the cluster to it."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.operator.tasks import apply_tenant_namespaces, reconcile_instance, reconcile_volume


def reconcile_changed_instance(
    sender: Any, *, instance_id: str, generation: int | None = None, state: str = "", **kwargs: Any
) -> None:
    """apps.instances.signals.instance_changed. The region's leader has usually reconciled it already, woken
    by the change's NOTIFY (changes.py); this task, a few seconds later, covers a moment without a
    listening leader (docs/operator.md "The launch path"). Carrying the generation and state the change left,
    it does nothing once the instance has moved on from them, and waits while a leader has the change
    (tasks.reconcile_instance, reconcile_instances.fallback_due)."""
    after = {"generation": generation, "state": state} if generation is not None and state else None
    reconcile_instance.apply_async(
        (instance_id,), kwargs={"unless_moved_on_from": after}, countdown=settings.RECONCILE_FALLBACK_SECONDS
    )


def reconcile_changed_volume(sender: Any, *, volume_id: str, **kwargs: Any) -> None:
    """apps.storage.signals.volume_changed"""
    reconcile_volume.delay(volume_id)


def reconcile_instances_of_bound_volume(sender: Any, *, instance_ids: list[str], **kwargs: Any) -> None:
    """apps.storage.signals.volume_bound: instances launched with the volume waited for its claim."""
    for instance_id in instance_ids:
        reconcile_instance.delay(instance_id)


def apply_namespaces_of_changed_quota(sender: Any, *, tenant_id: str, **kwargs: Any) -> None:
    """apps.quotas.signals.quota_changed: the tenant's ResourceQuota follows its new limits."""
    apply_tenant_namespaces.delay(tenant_id)
