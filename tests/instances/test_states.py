"""The pure state machine: every action and observation, what is refused, what is ignored.

The expected tables are written out here rather than read from apps/instances/states.py, so a change to the
machine has to be made (and seen) twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from apps.instances.states import (
    HOLDS_COMPUTE,
    LIVE,
    TERMINAL,
    Action,
    InvalidTransition,
    Observation,
    State,
    after_action,
    after_observation,
    allowed_actions,
    desired_after,
)

S = State

EXPECTED_ACTIONS: dict[tuple[State, Action], State] = {
    (S.PENDING, Action.STOP): S.STOPPING,
    (S.PROVISIONING, Action.STOP): S.STOPPING,
    (S.RUNNING, Action.STOP): S.STOPPING,
    (S.STARTING, Action.STOP): S.STOPPING,
    (S.STOPPED, Action.START): S.STARTING,
    (S.FAILED, Action.START): S.STARTING,
    (S.RUNNING, Action.RESTART): S.STARTING,
    (S.PENDING, Action.TERMINATE): S.TERMINATING,
    (S.PROVISIONING, Action.TERMINATE): S.TERMINATING,
    (S.RUNNING, Action.TERMINATE): S.TERMINATING,
    (S.STOPPING, Action.TERMINATE): S.TERMINATING,
    (S.STOPPED, Action.TERMINATE): S.TERMINATING,
    (S.STARTING, Action.TERMINATE): S.TERMINATING,
    (S.FAILED, Action.TERMINATE): S.TERMINATING,
}

# What the API shows as allowed_actions, in this order.
EXPECTED_ALLOWED: dict[State, list[str]] = {
    S.PENDING: ["stop", "terminate"],
    S.PROVISIONING: ["stop", "terminate"],
    S.RUNNING: ["stop", "restart", "terminate"],
    S.STOPPING: ["terminate"],
    S.STOPPED: ["start", "terminate"],
    S.STARTING: ["stop", "terminate"],
    S.TERMINATING: [],
    S.TERMINATED: [],
    S.FAILED: ["start", "terminate"],
}

EXPECTED_OBSERVATIONS: dict[tuple[State, Observation], State] = {
    (S.PENDING, Observation.POD_CREATED): S.PROVISIONING,
    (S.PENDING, Observation.POD_STARTED): S.PROVISIONING,
    (S.PENDING, Observation.POD_READY): S.RUNNING,
    (S.PROVISIONING, Observation.POD_READY): S.RUNNING,
    (S.STARTING, Observation.POD_READY): S.RUNNING,
    (S.STOPPING, Observation.POD_GONE): S.STOPPED,
    (S.TERMINATING, Observation.POD_GONE): S.TERMINATED,
    (S.PENDING, Observation.FAILED): S.FAILED,
    (S.PROVISIONING, Observation.FAILED): S.FAILED,
    (S.RUNNING, Observation.FAILED): S.FAILED,
    (S.STARTING, Observation.FAILED): S.FAILED,
    (S.STOPPING, Observation.FAILED): S.FAILED,
}

ALL_ACTION_PAIRS = list(itertools.product(State, Action))
ALL_OBSERVATION_PAIRS = list(itertools.product(State, Observation))
INVALID_ACTIONS = [pair for pair in ALL_ACTION_PAIRS if pair not in EXPECTED_ACTIONS]
STALE_OBSERVATIONS = [pair for pair in ALL_OBSERVATION_PAIRS if pair not in EXPECTED_OBSERVATIONS]


def _ids(pairs: Iterable[tuple[State, Action | Observation]]) -> list[str]:
    return [f"{state.value}-{event.value}" for state, event in pairs]


def test_the_tables_cover_every_state() -> None:
    assert set(EXPECTED_ALLOWED) == set(State)


@pytest.mark.parametrize(("state", "action"), list(EXPECTED_ACTIONS), ids=_ids(EXPECTED_ACTIONS))
def test_each_valid_action_leads_to_its_state(state: State, action: Action) -> None:
    assert after_action(state, action) == EXPECTED_ACTIONS[(state, action)]


@pytest.mark.parametrize(("state", "action"), INVALID_ACTIONS, ids=_ids(INVALID_ACTIONS))
def test_each_invalid_action_is_refused_naming_what_is_allowed(state: State, action: Action) -> None:
    with pytest.raises(InvalidTransition) as refused:
        after_action(state, action)

    assert refused.value.state == state
    assert refused.value.action == action.value
    assert refused.value.allowed == EXPECTED_ALLOWED[state]
    assert str(refused.value) == f"Cannot {action.value} an instance that is {state.value}."


@pytest.mark.parametrize("state", list(State), ids=str)
def test_allowed_actions_are_exactly_the_valid_ones(state: State) -> None:
    assert allowed_actions(state) == EXPECTED_ALLOWED[state]
    assert allowed_actions(state) == [a.value for a in Action if (state, a) in EXPECTED_ACTIONS]


def test_terminal_and_terminating_states_take_no_action() -> None:
    assert {S.TERMINATED} == TERMINAL
    for state in (S.TERMINATED, S.TERMINATING):
        assert allowed_actions(state) == []
        for action in Action:
            with pytest.raises(InvalidTransition):
                after_action(state, action)


def test_terminated_is_never_left_by_any_observation() -> None:
    for observation in Observation:
        assert after_observation(S.TERMINATED, observation) is None


@pytest.mark.parametrize(
    ("state", "observation"), list(EXPECTED_OBSERVATIONS), ids=_ids(EXPECTED_OBSERVATIONS)
)
def test_each_applicable_observation_leads_to_its_state(state: State, observation: Observation) -> None:
    assert after_observation(state, observation) == EXPECTED_OBSERVATIONS[(state, observation)]


@pytest.mark.parametrize(("state", "observation"), STALE_OBSERVATIONS, ids=_ids(STALE_OBSERVATIONS))
def test_stale_or_repeated_observations_return_none(state: State, observation: Observation) -> None:
    assert after_observation(state, observation) is None


def test_observations_are_idempotent() -> None:
    """The operator is level-triggered: reporting the same thing again changes nothing."""
    for state, observation in ALL_OBSERVATION_PAIRS:
        after = after_observation(state, observation)
        if after is not None:
            assert after_observation(after, observation) is None, (state, observation)


def test_every_state_is_reachable_from_pending() -> None:
    reached, frontier = {S.PENDING}, [S.PENDING]
    while frontier:
        state = frontier.pop()
        nexts = [after_observation(state, o) for o in Observation]
        nexts += [after_action(state, a) for a in Action if (state, a) in EXPECTED_ACTIONS]
        for nxt in nexts:
            if nxt is not None and nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)

    assert reached == set(State)


def test_which_states_hold_compute_and_count_as_live() -> None:
    assert {S.PENDING, S.PROVISIONING, S.RUNNING, S.STARTING, S.STOPPING, S.TERMINATING} == HOLDS_COMPUTE
    assert set(State) - {S.TERMINATED} == LIVE
    assert S.STOPPED not in HOLDS_COMPUTE and S.FAILED not in HOLDS_COMPUTE


@pytest.mark.parametrize(
    ("action", "desired"),
    [
        (Action.STOP, "stopped"),
        (Action.START, "running"),
        (Action.RESTART, "running"),
        (Action.TERMINATE, "terminated"),
    ],
)
def test_desired_state_after_each_action(action: Action, desired: str) -> None:
    assert desired_after(action) == desired


def test_states_actions_and_observations_use_their_wire_names() -> None:
    assert [s.value for s in State] == [
        "pending",
        "provisioning",
        "running",
        "stopping",
        "stopped",
        "starting",
        "terminating",
        "terminated",
        "failed",
    ]
    assert [a.value for a in Action] == ["stop", "start", "restart", "terminate"]
    assert [o.value for o in Observation] == ["pod_created", "pod_started", "pod_ready", "pod_gone", "failed"]
