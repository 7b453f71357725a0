"""GET .../instances/{id}?wait=...&timeout=...: the long-poll on an instance's state
(apps/instances/waiting.py), fed by the real NOTIFYs of the services, committed by another thread as the
operator would."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from apps.instances import services, waiting
from apps.instances.models import Instance
from apps.instances.states import Action, Observation, State
from tests.conftest import Actor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def later() -> Iterator[Callable[..., None]]:
    """Run `fn` in another thread (its own connection and transaction) after `delay` seconds."""
    threads: list[threading.Thread] = []

    def run(delay: float, fn: Callable[[], Any]) -> None:
        def target() -> None:
            try:
                time.sleep(delay)
                fn()
            finally:
                connection.close()

        thread = threading.Thread(target=target)
        thread.start()
        threads.append(thread)

    yield run
    for thread in threads:
        thread.join(30)


def _stop_fully(instance_id: Any) -> None:
    services.instance_act(actor=None, instance=Instance.objects.get(pk=instance_id), action=Action.STOP)
    services.instance_observe(instance_id=instance_id, observation=Observation.POD_GONE)


def _get(actor: Actor, instance: Any, query: str) -> Any:
    return actor.token_client().get(actor.url(f"/instances/{instance.pk}?{query}"))


@pytest.fixture
def running(make_instance: Callable[..., Any], owner: Actor) -> Instance:
    return make_instance(owner.tenant, created_by=owner.user, state=State.RUNNING)


def test_returns_as_soon_as_the_state_is_reached(owner: Actor, running: Instance, later: Any) -> None:
    later(0.5, lambda: _stop_fully(running.pk))
    started = time.monotonic()
    response = _get(owner, running, "wait=stopped&timeout=30")
    took = time.monotonic() - started
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "stopped"
    assert response[waiting.OUTCOME_HEADER] == "reached"
    assert 0.4 < took < 10  # woken by the change, long before the timeout


def test_times_out_with_the_current_state(owner: Actor, running: Instance) -> None:
    started = time.monotonic()
    response = _get(owner, running, "wait=stopped&timeout=1")
    took = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["state"] == "running"
    assert response[waiting.OUTCOME_HEADER] == "timeout"
    assert 1.0 <= took < 5


def test_a_state_already_reached_or_an_end_answers_at_once(
    owner: Actor, running: Instance, make_instance: Callable[..., Any]
) -> None:
    response = _get(owner, running, "wait=stopped,running&timeout=30")
    assert response[waiting.OUTCOME_HEADER] == "reached"
    failed = make_instance(owner.tenant, created_by=owner.user, state=State.FAILED)
    started = time.monotonic()
    response = _get(owner, failed, "wait=running&timeout=30")
    assert response.status_code == 200 and response.json()["state"] == "failed"
    assert response[waiting.OUTCOME_HEADER] == "ended"
    assert time.monotonic() - started < 5


def test_a_failure_while_waiting_ends_the_wait(owner: Actor, make_instance: Any, later: Any) -> None:
    pending = make_instance(owner.tenant, created_by=owner.user, state=State.PENDING)
    later(
        0.5,
        lambda: services.instance_observe(
            instance_id=pending.pk, observation=Observation.FAILED, reason="image_pull_error", message="no"
        ),
    )
    response = _get(owner, pending, "wait=running&timeout=30")
    assert response.json()["state"] == "failed" and response[waiting.OUTCOME_HEADER] == "ended"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("wait=bogus", "wait"),
        ("wait=running,", "wait"),
        ("wait=", "wait"),
        ("wait=running&timeout=0", "timeout"),
        ("wait=running&timeout=61", "timeout"),
        ("wait=running&timeout=soon", "timeout"),
        ("timeout=5", "timeout"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(
    owner: Actor, running: Instance, query: str, field: str
) -> None:
    response = _get(owner, running, query)
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]


def test_another_tenants_instance_is_404(
    owner: Actor, make_actor: Callable[..., Actor], running: Instance
) -> None:
    stranger = make_actor()
    response = stranger.token_client().get(stranger.url(f"/instances/{running.pk}?wait=stopped&timeout=1"))
    assert response.status_code == 404


def test_waiters_are_bounded(owner: Actor, running: Instance, settings: Any, later: Any) -> None:
    settings.INSTANCE_WAIT_MAX_WAITERS = 1
    first: list[Any] = []
    later(0, lambda: first.append(_get(owner, running, "wait=stopped&timeout=3")))
    time.sleep(1.0)  # the first request is waiting
    response = _get(owner, running, "wait=stopped&timeout=3")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "too_many_waiters"
    assert response["Retry-After"] == str(waiting.RETRY_AFTER_SECONDS)
    time.sleep(3)
    assert first and first[0][waiting.OUTCOME_HEADER] == "timeout"
    assert _get(owner, running, "wait=running&timeout=3").status_code == 200  # the slot is free again


def test_a_change_between_the_read_and_the_wait_is_not_lost(running: Instance) -> None:
    """The state is read after LISTEN: a change committed right after the read still wakes the waiter."""

    def stop_in_own_connection() -> None:
        _stop_fully(running.pk)
        connection.close()

    def read_then_change() -> str | None:
        state = Instance.objects.filter(pk=running.pk).values_list("state", flat=True).first()
        changer = threading.Thread(target=stop_in_own_connection)
        changer.start()
        changer.join()
        return state

    started = time.monotonic()
    outcome = waiting.wait_for_state(running.pk, {"stopped"}, 10, current_state=read_then_change)
    assert outcome == waiting.Outcome.REACHED
    assert time.monotonic() - started < 5
