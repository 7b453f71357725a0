"""The instance state machine, pure: no database, no Kubernetes.

Customers act (stop, start, restart, terminate); the operator observes (pod created, ready, gone, failed).
Each function returns the next state or raises InvalidTransition listing what is allowed.
See docs/instances.md for the diagram.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class State(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STARTING = "starting"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


class Action(StrEnum):
    STOP = "stop"
    START = "start"
    RESTART = "restart"
    TERMINATE = "terminate"


class Observation(StrEnum):
    """What the operator reports about an instance's pod."""

    POD_CREATED = "pod_created"
    # Its container started on a node: the pod holds its GPUs from here on, and billing starts (Ready or not).
    POD_STARTED = "pod_started"
    POD_READY = "pod_ready"
    POD_GONE = "pod_gone"
    FAILED = "failed"


class FailureReason(StrEnum):
    NO_CAPACITY = "no_capacity"
    IMAGE_PULL_ERROR = "image_pull_error"
    CRASH_LOOP = "crash_loop"
    QUOTA_EXCEEDED = "quota_exceeded"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    NODE_LOST = "node_lost"
    # Its pod ran but never became Ready within INSTANCE_READY_TIMEOUT_SECONDS (reconcile.enforce_timers).
    NOT_READY = "not_ready"
    INTERNAL = "internal"
    # Another node of its cluster failed before the cluster ran: all or nothing (cluster_services).
    CLUSTER_FAILED = "cluster_failed"


class InvalidTransition(Exception):
    def __init__(self, state: State, action: str, allowed: list[str]):
        self.state, self.action, self.allowed = state, action, allowed
        super().__init__(f"Cannot {action} an instance that is {state}.")


ACTIVE: Final = frozenset({State.PENDING, State.PROVISIONING, State.RUNNING, State.STARTING, State.STOPPING})
# States in which an instance may hold GPUs, vCPU and memory against quota and capacity; whether a
# terminating one does is kept in Instance.holds_compute (see holds_compute_after).
HOLDS_COMPUTE: Final = ACTIVE | {State.TERMINATING}
# States that count against the instance quota (everything but gone).
LIVE: Final = frozenset(State) - {State.TERMINATED}
TERMINAL: Final = frozenset({State.TERMINATED})
# States an instance passes through on its way somewhere else: one that stays in them for long is stuck
# (the gpucloud_instances_stuck gauge), and one waiting in PROVISIONING or STARTING for its pod to turn Ready
# fails with NOT_READY after INSTANCE_READY_TIMEOUT_SECONDS.
TRANSITIONAL: Final = frozenset(
    {State.PENDING, State.PROVISIONING, State.STARTING, State.STOPPING, State.TERMINATING}
)
AWAITING_READY: Final = frozenset({State.PROVISIONING, State.STARTING})

ACTIONS: Final[dict[Action, dict[State, State]]] = {
    Action.STOP: {
        State.PENDING: State.STOPPING,
        State.PROVISIONING: State.STOPPING,
        State.RUNNING: State.STOPPING,
        State.STARTING: State.STOPPING,
    },
    Action.START: {State.STOPPED: State.STARTING, State.FAILED: State.STARTING},
    # Restart replaces the pod: the operator deletes it and makes a new one.
    Action.RESTART: {State.RUNNING: State.STARTING},
    Action.TERMINATE: {s: State.TERMINATING for s in State if s not in (State.TERMINATING, State.TERMINATED)},
}

OBSERVATIONS: Final[dict[Observation, dict[State, State]]] = {
    Observation.POD_CREATED: {State.PENDING: State.PROVISIONING},
    # In PROVISIONING and STARTING the state stays; what a container start changes there is billing
    # (STARTS_BILLING below, services.instance_observe).
    Observation.POD_STARTED: {State.PENDING: State.PROVISIONING},
    Observation.POD_READY: {
        State.PENDING: State.RUNNING,
        State.PROVISIONING: State.RUNNING,
        State.STARTING: State.RUNNING,
    },
    Observation.POD_GONE: {State.STOPPING: State.STOPPED, State.TERMINATING: State.TERMINATED},
    Observation.FAILED: {s: State.FAILED for s in ACTIVE},
}


# A container started on a node in one of these states starts the billing clock, once per pod (the clock is
# kept on the instance, so the service, not this pure table, knows whether it already runs).
STARTS_BILLING: Final = frozenset({State.PENDING, State.PROVISIONING, State.STARTING})


def holds_compute_after(state: State, held_before: bool) -> bool:
    """Whether an instance in `state` holds its GPUs, vCPU and memory. Terminating holds what it held:
    a running instance's pod is still going away; a stopped or failed one had nothing to give back."""
    if state in ACTIVE:
        return True
    if state == State.TERMINATING:
        return held_before
    return False


def allowed_actions(state: State) -> list[str]:
    return [action.value for action, table in ACTIONS.items() if state in table]


def after_action(state: State, action: Action) -> State:
    table = ACTIONS[action]
    if state not in table:
        raise InvalidTransition(state, action.value, allowed_actions(state))
    return table[state]


def after_observation(state: State, observation: Observation) -> State | None:
    """The next state, or None when the observation does not apply (stale or repeated): the operator is
    level-triggered and may report the same thing many times."""
    return OBSERVATIONS[observation].get(state)


def desired_after(action: Action) -> str:
    return {Action.STOP: "stopped", Action.TERMINATE: "terminated"}.get(action, "running")
