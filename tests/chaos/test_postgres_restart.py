"""Drill 3: PostgreSQL restarts (fast shutdown) during the churn. Every process's sessions end, the
operator's leader-lock session included; each process reconnects by itself (none is restarted), the API
serves again, and nothing acknowledged is lost (docs/resilience.md). Runs after every other test of the
session (chaos(last=True)): it ends this process's connections too."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import pytest
from django.utils import timezone
from kubernetes import client

from apps.instances.models import Instance, InstanceEvent
from apps.operator.leader import lock_holder, lock_key
from tests.chaos.drill import churns_for, finish, full_stack, settle_and_check, summary
from tests.chaos.outages import restart_postgres
from tests.chaos.stack import Stack
from tests.conftest import Actor
from tests.instances.helpers import Catalog
from tests.support.processes import wait_for

pytestmark = [pytest.mark.chaos(last=True), pytest.mark.django_db(transaction=True)]

SEED = 20261015


def test_postgres_restart_during_churn(
    stack: Stack,
    owners: Callable[[int], list[Actor]],
    connected: Catalog,
    kube_clients: dict[str, client.ApiClient],
) -> None:
    full_stack(stack)
    churns = churns_for(stack, owners(2), SEED)
    first = {service.name: service.current for service in stack.services()}
    for churn in churns:
        churn.start()
    try:
        time.sleep(15)
        restarted_at: datetime = timezone.now()
        took = restart_postgres()
        time.sleep(25)
        # Nobody was restarted: every process is the one started before the restart, and alive.
        assert {s.name: s.current for s in stack.services()} == first
        assert all(s.alive() for s in stack.services()), stack.logs()
    finally:
        finish(stack, churns)

    # The operator leads both regions again, on a new lock session.
    for region in (connected.us_east, connected.eu_west):
        wait_for(lambda region=region: lock_holder(lock_key(region.pk)), what=f"a leader of {region.slug}")
    # Launches acknowledged after the restart ran like the others.
    after = [
        o.body["id"]
        for c in churns
        for o in c.launches.values()
        if Instance.objects.get(pk=o.body["id"]).created_at > restarted_at
    ]
    assert after, "no launch was acknowledged after the restart"
    settle_and_check(stack, churns, kube_clients)
    assert InstanceEvent.objects.filter(instance_id__in=after, to_state="running").exists()
    print(f"\nchaos drill 3 (PostgreSQL restart, {took:.1f}s): {summary(churns)}")
