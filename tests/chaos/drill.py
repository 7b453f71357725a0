"""The shape every churn drill shares: start the control plane, churn from two tenants' clients while a
disruption runs, then let everything settle and check it (checks.py)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from apps.tenants.models import Tenant
from tests.chaos import checks
from tests.chaos.churn import Api, Churn
from tests.chaos.stack import Service, Stack
from tests.conftest import Actor

REGIONS = ("us-east-1", "eu-west-1")


def full_stack(stack: Stack) -> Stack:
    stack.add_web()
    stack.add_web()
    stack.add_worker()
    stack.add_operator()
    stack.start_all()
    return stack


def churns_for(
    stack: Stack, actors: list[Actor], seed: int, regions: tuple[str, ...] = REGIONS
) -> list[Churn]:
    rng = random.Random(seed)
    return [Churn(Api(stack.urls, actor, random.Random(rng.getrandbits(64))), regions) for actor in actors]


@dataclass
class Timeline:
    """Things to do at given seconds after `run()` starts, in order, from this thread."""

    steps: list[tuple[float, str, Callable[[], Any]]] = field(default_factory=list)
    done: list[tuple[float, str]] = field(default_factory=list)

    def at(self, seconds: float, what: str, do: Callable[[], Any]) -> None:
        self.steps.append((seconds, what, do))

    def kill_and_restart(self, service: Service, at: float, down_for: float) -> None:
        self.at(at, f"kill -9 {service.name}", service.kill)
        self.at(at + down_for, f"start {service.name}", lambda: service.start(wait=False))

    def run(self) -> None:
        began = time.monotonic()
        for seconds, what, do in sorted(self.steps, key=lambda s: s[0]):
            time.sleep(max(0.0, began + seconds - time.monotonic()))
            do()
            self.done.append((round(time.monotonic() - began, 1), what))


def finish(stack: Stack, churns: list[Churn]) -> None:
    """Stop the clients, bring back any process still down, and wait until every one is ready."""
    for churn in churns:
        churn.join()
    for service in stack.services():
        if not service.alive():
            service.start(wait=False)
    for service in stack.services():
        service.wait_ready()


def tenants_of(churns: list[Churn]) -> list[Tenant]:
    return [churn.api.actor.tenant for churn in churns]


def settle_and_check(stack: Stack, churns: list[Churn], kube: dict[str, client.ApiClient]) -> None:
    tenants = tenants_of(churns)
    checks.wait_settled(tenants, stack)
    checks.assert_no_orphans(kube, tenants)
    checks.assert_acknowledged_once(churns)


def terminate_everything(stack: Stack, churns: list[Churn]) -> None:
    """Through the API, as the customer would; then wait until every instance is gone."""
    for churn in churns:
        for item in churn.api.read("/instances?limit=200")["results"]:
            churn.act(item["id"], "terminate")
    checks.wait_settled(tenants_of(churns), stack)


def summary(churns: list[Churn], timeline: Timeline | None = None) -> dict[str, Any]:
    actions: dict[str, int] = {}
    for churn in churns:
        for _id, action, _outcome in churn.acknowledged_actions():
            actions[action] = actions.get(action, 0) + 1
    return {
        "launches": sum(len(c.launches) for c in churns),
        "actions": actions,
        "refused": sum(len(c.refused) for c in churns),
        "retried": sum(
            o.attempts > 1 for c in churns for o in [*c.launches.values(), *[a[2] for a in c.actions]]
        ),
        "timeline": timeline.done if timeline else [],
    }
