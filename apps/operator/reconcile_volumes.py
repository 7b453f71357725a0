"""Bringing a volume's claim to what the volume says: level-triggered and idempotent, like instances
(apps/operator/reconcile_instances.py). Regions connected to a cluster are reconciled against it
(reconciler.py reconcile_volume); in a region without one no claim can exist, so every
change completes at once."""

from __future__ import annotations

import logging
from typing import Any

from apps.operator import reconciler
from apps.operator.client import CLUSTER_ERRORS, has_cluster, reachable_here
from apps.storage import services
from apps.storage.models import Volume, VolumeState

logger = logging.getLogger(__name__)

_WITHOUT_CLUSTER = {
    VolumeState.CREATING: "bound",
    VolumeState.RESIZING: "resized",
    VolumeState.DELETING: "gone",
}


def reconcile_volume(volume_id: Any) -> None:
    volume = Volume.objects.select_related("region").filter(pk=volume_id).first()
    if volume is None or volume.state == VolumeState.DELETED:
        return
    if has_cluster(volume.region):
        if not reachable_here(volume.region):
            # As for instances (reconcile_instances.py): an in-cluster region this process holds no
            # ServiceAccount token for is the operator's to reconcile, at its next resync; not an error.
            logger.debug(
                "reconcile of volume %s skipped: region %s is in-cluster and this process has no "
                "ServiceAccount token; the operator reconciles it",
                volume.pk,
                volume.region.slug,
            )
            return
        try:
            reconciler.reconcile_volume(volume.pk)
        except CLUSTER_ERRORS as exc:
            # The operator's resync retries; nothing is lost by giving up now.
            logger.warning(
                "reconcile of volume %s in region %s failed: %s", volume.pk, volume.region.slug, exc
            )
        return
    observation = _WITHOUT_CLUSTER.get(VolumeState(volume.state))
    if observation is not None:
        services.volume_observe(volume_id=volume.pk, observation=observation, capacity_gib=volume.size_gib)
