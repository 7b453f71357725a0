"""Bringing an instance's observed state to its desired state.

`reconcile_instance` is level-triggered and idempotent: it may run any number of times for the same change.
Regions connected to a Kubernetes cluster are reconciled against it (reconciler.py).
A region without a cluster connection can hold no pod, so stopping and terminating complete at once there
and launches stay pending, with a state message saying why, until the region is connected. An `in_cluster`
region is left to the operator by a process that holds no ServiceAccount token (the worker's on-commit task,
with the chart): the operator's resync reconciles it.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

from apps.core import build_status, request_context
from apps.instances import services
from apps.instances.models import Instance
from apps.instances.states import Observation, State
from apps.operator import leader, reconciler
from apps.operator.client import CLUSTER_ERRORS, has_cluster, reachable_here

logger = logging.getLogger(__name__)


def reconcile_instance(instance_id: Any) -> None:
    with request_context.bind(instance_id=str(instance_id)):  # every line it logs names the instance
        _reconcile_instance(instance_id)


class Fallback(Enum):
    """What the fallback of a change (receivers.py, tasks.reconcile_instance) does when it comes due."""

    SKIP = "skip"  # the instance is gone, or moved on: the change was acted on
    WAIT = "wait"  # unchanged, but the region has a leader: its queue or its resync has the change
    RECONCILE = "reconcile"  # unchanged, and no operator leads the region: the fallback does the work


def fallback_due(instance_id: Any, left: dict[str, Any]) -> Fallback:
    """`left`: the generation and state the change left. Only an observation of its pod moves an instance
    on without a new generation (pending to provisioning once its pod is made, starting to running,
    stopping to stopped), and only the region's leader observes: if the instance, at that generation still,
    is in another state, the change was acted on, and reconciling again would send its objects a second
    time (a 409 and a read per launch). If it is unchanged while an operator leads the region, the leader
    is behind (a burst of launches queues in its change workers) or missed the NOTIFY (its resync makes up
    for it): the fallback waits rather than doing the same work beside it. One narrow statement, and the
    leader's lock looked up in pg_locks, not the instance with the relations a reconcile loads."""
    now = Instance.objects.filter(pk=instance_id).values_list("generation", "state", "region_id").first()
    if now is None:
        return Fallback.SKIP
    generation, state, region_id = now
    if generation == left.get("generation") and str(state) != left.get("state"):
        return Fallback.SKIP
    return Fallback.WAIT if leader.region_led(region_id) else Fallback.RECONCILE


def _reconcile_instance(instance_id: Any) -> None:
    instance = reconciler.load_instance(instance_id)  # once: the reconcile acts on this very row
    if instance is None:
        return
    if has_cluster(instance.region):
        if not reachable_here(instance.region):
            # Not a failure: this process was never meant to reach that cluster, and the operator's resync
            # does the work (within operator.resyncSeconds). Not counted as a reconcile error either.
            logger.debug(
                "reconcile of instance %s skipped: region %s is in-cluster and this process has no "
                "ServiceAccount token; the operator reconciles it",
                instance.pk,
                instance.region.slug,
            )
            return
        try:
            reconciler.reconcile(instance.pk, fresh=instance)
        except CLUSTER_ERRORS as exc:
            # Unreachable or refusing: the operator's resync retries, so nothing is lost by giving up now.
            logger.warning(
                "reconcile of instance %s in region %s failed: %s",
                instance.pk,
                instance.region.slug,
                type(exc).__name__,
            )
        return
    if instance.state in (State.STOPPING, State.TERMINATING):
        # Without a cluster there is no pod to wait for.
        services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE)
    elif instance.state == State.PENDING:
        # It starts once the region is connected (catalog.signals.region_connected); meanwhile say why.
        services.instance_note_waiting(instance_id=instance.pk, message=waiting_message(instance.region.slug))


def waiting_message(region_slug: str) -> str:
    """Why a launch in a region without a cluster connection waits: the local bring-up's estimate when it
    is what will connect the region (`make run` on a fresh machine), else the plain fact."""
    return build_status.region_note(region_slug) or (
        f"Region {region_slug} has no cluster connection yet; the instance starts once it is connected."
    )
