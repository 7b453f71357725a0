"""Drill 2: eu-west-1's kube-apiserver stops answering for 30 s during the churn (SIGSTOP, then SIGCONT).
The API keeps answering and accepts launches there, which wait as pending; us-east-1 launches still become
running meanwhile; once the apiserver is back everything converges (docs/resilience.md)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
from kubernetes import client

from apps.instances.models import Instance, InstanceEvent
from tests.chaos.churn import Api, Churn
from tests.chaos.drill import churns_for, finish, full_stack, settle_and_check, summary
from tests.chaos.outages import ApiServerPause
from tests.chaos.stack import Stack
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox
from tests.support.processes import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

SEED = 20261014
OUTAGE_SECONDS = 30
DOWN, UP = "eu-west-1", "us-east-1"


def state_of(instance_id: str) -> str:
    return Instance.objects.get(pk=instance_id).state


def test_one_regions_apiserver_down_for_30_seconds(
    stack: Stack,
    owners: Callable[[int], list[Actor]],
    sandbox: Sandbox,
    kube_clients: dict[str, client.ApiClient],
) -> None:
    full_stack(stack)
    *churners, prober = owners(3)
    churns = churns_for(stack, churners, SEED)
    probe = Churn(Api(stack.urls, prober, random.Random(SEED)), (DOWN, UP))
    apiserver = ApiServerPause(sandbox, DOWN)
    for churn in churns:
        churn.start()
    try:
        time.sleep(10)
        acknowledged_before = sum(len(c.launches) + len(c.actions) for c in churns)
        apiserver.pause()
        try:
            waiting = probe.launch(DOWN)
            converging = probe.launch(UP)
            assert waiting.acknowledged and converging.acknowledged, (waiting, converging)
            # The healthy region is unaffected: its launch runs while the other region is still down.
            wait_for(
                lambda: state_of(converging.body["id"]) == "running",
                what=f"the {UP} launch to run during the {DOWN} outage",
                timeout=OUTAGE_SECONDS - (time.monotonic() - (apiserver.paused_at or 0)),
                processes=stack.processes,
            )
            time.sleep(max(0.0, (apiserver.paused_at or 0) + OUTAGE_SECONDS - time.monotonic()))
            # Accepted, and waiting: nothing could reach the cluster.
            assert state_of(waiting.body["id"]) == "pending"
            assert not InstanceEvent.objects.filter(
                instance_id=waiting.body["id"], kind="observation"
            ).exists()
        finally:
            apiserver.resume()
        # The clients kept being answered throughout.
        assert sum(len(c.launches) + len(c.actions) for c in churns) > acknowledged_before
        time.sleep(10)
    finally:
        finish(stack, churns)

    wait_for(
        lambda: state_of(waiting.body["id"]) == "running",
        what=f"the {DOWN} launch to run once its apiserver is back",
        processes=stack.processes,
    )
    settle_and_check(stack, [*churns, probe], kube_clients)
    print(f"\nchaos drill 2 (apiserver outage): {summary(churns)}")
