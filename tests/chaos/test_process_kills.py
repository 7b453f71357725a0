"""Drill 1: SIGKILL the operator, the worker and a web server at seeded moments during a churn of launches,
stops, starts, restarts and terminations from two tenants' clients; each comes back a few seconds later.
Then: no orphan pods, nothing stuck in a transitional state, every acknowledged request took effect exactly
once, and the ledger bills exactly the observed billed time (docs/resilience.md)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.chaos import checks
from tests.chaos.drill import (
    Timeline,
    churns_for,
    finish,
    full_stack,
    settle_and_check,
    summary,
    tenants_of,
    terminate_everything,
)
from tests.chaos.stack import Stack
from tests.conftest import Actor

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

SEED = 20261013
CHURN_SECONDS = 60


def test_kill_9_of_operator_worker_and_web_during_churn(
    stack: Stack, owners: Callable[[int], list[Actor]], kube_clients: dict[str, client.ApiClient]
) -> None:
    full_stack(stack)
    rng = random.Random(SEED)
    churns = churns_for(stack, owners(2), rng.getrandbits(64))
    timeline = Timeline()
    assert stack.operator is not None and stack.worker is not None
    # Each victim dies twice: once in each half of the churn, down for one to four seconds.
    for victim in (stack.operator, stack.worker, rng.choice(stack.webs)):
        for half in (0, 1):
            at = half * CHURN_SECONDS / 2 + rng.uniform(5, CHURN_SECONDS / 2 - 8)
            timeline.kill_and_restart(victim, at, rng.uniform(1, 4))
    timeline.at(CHURN_SECONDS, "end of churn", lambda: None)

    began = time.monotonic()
    for churn in churns:
        churn.start()
    try:
        timeline.run()
    finally:
        finish(stack, churns)
    assert [s.kills for s in (stack.operator, stack.worker)] == [2, 2]
    assert sum(web.kills for web in stack.webs) == 2

    settle_and_check(stack, churns, kube_clients)
    figures: dict[str, Any] = summary(churns, timeline)
    assert figures["launches"] >= 5, figures

    terminate_everything(stack, churns)
    figures.update(checks.assert_ledger_matches_billed_time(tenants_of(churns)))
    figures["seconds"] = round(time.monotonic() - began)
    print(f"\nchaos drill 1 (kill -9): {figures}")
