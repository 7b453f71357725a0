"""Recording `running` (reconciler.record_pod, as the PodHandler calls it with the leader's stores): one
conditional UPDATE and the timeline line, no second read of the instance, no GET of its Service or node.

The pod and the Service are JSON as the apiserver sends it; the cluster behind `Cluster` is an address where
nothing listens, so any request it were asked to make would fail the test (the stores are what answer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.instances.models import Instance, InstanceEvent
from apps.operator.reconciler import load_instance, record_pod
from apps.operator.specs import InstancePodSpec, spec_from_instance
from tests.conftest import Actor
from tests.operator.ready_pods import NODE_PORT, nowhere, ready_pod, stores_with_service

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Starting:
    """A starting instance whose container started 30 s ago (the billing clock runs), loaded as the
    PodHandler loads it, with its pod spec."""

    made: Instance
    instance: Instance
    spec: InstancePodSpec
    started: datetime


@pytest.fixture
def starting(make_instance: Any, tenant_owner: Actor) -> Starting:
    started = timezone.now().replace(microsecond=0) - timedelta(seconds=30)
    made = make_instance(
        tenant_owner.tenant, created_by=tenant_owner.user, state="starting", billing_since=started
    )
    instance = load_instance(made.pk)
    assert instance is not None
    return Starting(made=made, instance=instance, spec=spec_from_instance(instance), started=started)


def test_recording_running_is_one_update_and_its_event(starting: Starting) -> None:
    instance, spec, started = starting.instance, starting.spec, starting.started
    pod = ready_pod(spec.namespace, spec.name, started)
    seen = stores_with_service(spec.namespace, spec.name)

    with CaptureQueriesContext(connection) as queries:
        record_pod(instance, pod, nowhere(), spec, seen)

    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    # The state's NOTIFY for waiting clients (apps/core/notify.py) goes out with the commit; no read, no GET.
    notifies = [s for s in statements if s.startswith("SELECT pg_notify('gpucloud_instance_state'")]
    assert len(notifies) == 1, statements
    statements = [s for s in statements if s not in notifies]
    assert len(statements) == 2, statements
    assert statements[0].startswith("UPDATE") and "WHERE" in statements[0]  # the conditional UPDATE
    assert statements[1].startswith("INSERT") and "instances_instanceevent" in statements[1]
    row = Instance.objects.get(pk=starting.made.pk)
    assert row.state == "running" and row.running_since is not None
    assert row.billing_since == started  # the clock the container's start set goes on
    assert row.connection["port"] == NODE_PORT  # from the Service in the stores
    assert row.connection["host"] == (instance.region.ssh_host or "10.1.2.3")
    event = InstanceEvent.objects.get(instance_id=starting.made.pk, name="pod_ready")
    assert (event.from_state, event.to_state, event.billable) == ("starting", "running", True)


def test_an_instance_that_moved_on_since_it_was_read_is_left_alone(starting: Starting) -> None:
    spec = starting.spec
    # Failed by another worker (say the not-ready timer) after this one read the row.
    Instance.objects.filter(pk=starting.made.pk).update(state="failed", billing_since=None)

    record_pod(
        starting.instance,
        ready_pod(spec.namespace, spec.name, starting.started),
        nowhere(),
        spec,
        stores_with_service(spec.namespace, spec.name),
    )

    assert Instance.objects.get(pk=starting.made.pk).state == "failed"
    assert not InstanceEvent.objects.filter(instance_id=starting.made.pk, name="pod_ready").exists()
