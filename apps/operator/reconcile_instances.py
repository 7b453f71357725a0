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
from typing import Any

from apps.core import build_status, request_context
from apps.instances import services
from apps.instances.models import Instance
from apps.instances.states import Observation, State
from apps.operator import reconciler
from apps.operator.client import CLUSTER_ERRORS, has_cluster, reachable_here

logger = logging.getLogger(__name__)


def reconcile_instance(instance_id: Any, *, unless_moved_on_from: dict[str, Any] | None = None) -> None:
    """`unless_moved_on_from`: the generation and state a change left, when this is that change's fallback
    (receivers.py): nothing is done if the instance, at that generation still, is in another state by now.
    Only an observation of its pod moves it on without a new generation (pending to provisioning once its
    pod is made, starting to running, stopping to stopped), and only the region's leader, whose watch
    observes, reconciles on the change's NOTIFY: the change was acted on, and a second reconcile would
    send its objects again for nothing (a 409 and a read per launch). A change nobody acted on leaves the
    state as it was, and the fallback runs."""
    with request_context.bind(instance_id=str(instance_id)):  # every line it logs names the instance
        _reconcile_instance(instance_id, unless_moved_on_from)


def _moved_on(instance_id: Any, since: dict[str, Any]) -> bool:
    """Read in one narrow statement, not with the instance's relations that a reconcile loads: a burst of
    launches has one fallback each, and most find their instance moved on."""
    now = Instance.objects.filter(pk=instance_id).values_list("generation", "state").first()
    return now is not None and now[0] == since.get("generation") and str(now[1]) != since.get("state")


def _reconcile_instance(instance_id: Any, unless_moved_on_from: dict[str, Any] | None) -> None:
    if unless_moved_on_from is not None and _moved_on(instance_id, unless_moved_on_from):
        logger.debug("fallback reconcile of instance %s skipped: acted on already", instance_id)
        return
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
