"""A cluster's state, pure: derived from its nodes' states and what the customer asked for.

The nodes are instances and keep their own state machine (states.py); the cluster's state is a summary of
theirs, recomputed whenever one of them changes (cluster_services.cluster_sync). See docs/clusters.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from apps.instances.states import Action, State


class ClusterState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    DEGRADED = "degraded"  # a node lost after the whole cluster ran
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


# Not placed yet: admission counts these clusters' nodes as promised in their block (cluster_unplaced_idx).
UNPLACED: Final = frozenset({ClusterState.PENDING, ClusterState.PROVISIONING, ClusterState.STARTING})

ACTIONS: Final[dict[Action, frozenset[ClusterState]]] = {
    Action.STOP: frozenset(
        {
            ClusterState.PENDING,
            ClusterState.PROVISIONING,
            ClusterState.RUNNING,
            ClusterState.DEGRADED,
            ClusterState.STARTING,
        }
    ),
    Action.START: frozenset({ClusterState.STOPPED, ClusterState.FAILED}),
    Action.TERMINATE: frozenset(ClusterState) - {ClusterState.TERMINATING, ClusterState.TERMINATED},
}

# A node in one of these states has lost its pod (or never got one) while the cluster should run.
_LOST: Final = frozenset({State.FAILED, State.STOPPED})


def allowed_actions(state: str) -> list[str]:
    return [action.value for action, states in ACTIONS.items() if state in states]


def summarize(*, desired: str, current: str, node_states: Iterable[str], ran: bool) -> ClusterState:
    """The cluster's state from its nodes'. `desired`: running, stopped or terminated; `current`: the
    cluster's state now (a failed cluster stays failed until started again); `ran`: every node ran once
    since the last start (a node lost after that degrades the cluster instead of failing it)."""
    states = [State(s) for s in node_states]
    if desired == "terminated":
        done = all(s == State.TERMINATED for s in states)
        return ClusterState.TERMINATED if done else ClusterState.TERMINATING
    if desired == "stopped":
        done = all(s in (State.STOPPED, State.FAILED, State.TERMINATED) for s in states)
        return ClusterState.STOPPED if done else ClusterState.STOPPING
    if current == ClusterState.FAILED:
        return ClusterState.FAILED
    if states and all(s == State.RUNNING for s in states):
        return ClusterState.RUNNING
    if any(s in _LOST for s in states):
        return ClusterState.DEGRADED if ran else ClusterState.FAILED
    if current in (ClusterState.RUNNING, ClusterState.DEGRADED) or (ran and current != ClusterState.STARTING):
        # A node being replaced (starting again) after the cluster ran.
        return ClusterState.DEGRADED
    if current == ClusterState.STARTING or any(s == State.STARTING for s in states):
        return ClusterState.STARTING
    if any(s != State.PENDING for s in states):
        return ClusterState.PROVISIONING
    return ClusterState.PENDING
