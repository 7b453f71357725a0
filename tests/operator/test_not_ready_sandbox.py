"""An instance whose pod runs but never turns Ready, against the Kubernetes sandbox: it is billed from the
moment its container started on a node, counts in the wallet's burn rate while it waits, and fails with
reason not_ready after the (shortened) ready timeout, its pod deleted and its billing stopped there.

kwok runs no processes: the sandbox's stage `pod-running-not-ready` (sandbox/stages/) gives a pod whose user
command (under the platform's SSH server) is `sleep infinity` the status a kubelet reports for a pod whose
readiness probe keeps failing (Running, Ready false, the container's start time, a readiness-probe Warning).
The apiserver, scheduler, watchable status and deletion are real; only the timeout is shortened, and the
seconds are real seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db.models import Sum
from django.test import TestCase
from django.utils import timezone
from kubernetes import client

from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.billing.selectors import wallet_of
from apps.instances import timers
from apps.instances.models import Instance, InstanceEvent
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, wait_for

pytestmark = pytest.mark.django_db

READY_TIMEOUT = 6  # seconds, instead of 600


@pytest.fixture
def tenant(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, tenant_owner: Actor
) -> Iterator[SandboxTenant]:
    connect(catalog.us_east, sandbox)
    sandbox_tenant = SandboxTenant(actor=tenant_owner, kube_clients=kube_clients)
    yield sandbox_tenant
    sandbox_tenant.cleanup()


def _container_started(pod: client.V1Pod | None) -> datetime | None:
    for status in (pod.status.container_statuses if pod and pod.status else None) or []:
        if status.state and status.state.running and status.state.running.started_at:
            return status.state.running.started_at
    return None


def _ready(pod: client.V1Pod) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == "Ready"), None)


def test_a_pod_that_never_turns_ready_is_billed_from_its_start_and_fails_not_ready(
    tenant: SandboxTenant, settings
) -> None:
    settings.INSTANCE_READY_TIMEOUT_SECONDS = READY_TIMEOUT
    launched = tenant.launch(
        instance_type="gpu-h100x1", region="us-east-1", image="pytorch", command=["sleep", "infinity"]
    )
    pod = wait_for(
        lambda: _container_started(tenant.read_pod(launched["id"])) and tenant.read_pod(launched["id"]),
        what="the container to start",
    )
    assert (pod.status.phase, _ready(pod)) == ("Running", "False")  # the kubelet's report, not ours

    # The watch (here: the reconciler, as the watch would call it) records the start: billing begins at the
    # container's start time, while the instance still says provisioning.
    instance = drive(launched["id"], lambda i: i.billing_since is not None, what="billed")
    assert instance.state == "provisioning"
    started = _container_started(pod)
    assert started is not None
    assert abs((instance.billing_since - started).total_seconds()) < 1
    assert tenant.detail(launched["id"])["billing_since"] is not None

    # The wallet counts it: burn rate is the instance's price, so the runway falls.
    assert wallet_of(tenant.actor.tenant).burn_rate_per_hour == Decimal(instance.price_per_hour)

    time.sleep(READY_TIMEOUT + 1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert timers.enforce_timers() == 1  # fails it, and queues the reconcile that deletes the pod
    failed = Instance.objects.get(pk=launched["id"])
    assert (failed.state, failed.failure_reason, failed.billing_since) == ("failed", "not_ready", None)
    assert "did not become ready within 6 s" in failed.state_message
    wait_for(lambda: tenant.read_pod(launched["id"]) is None, what="the pod to be deleted")

    # Billed for exactly the seconds its pod ran: from the container's start to the failure.
    event = InstanceEvent.objects.get(instance_id=launched["id"], name="failed")
    assert (event.reason, event.to_state, event.billable) == ("not_ready", "failed", False)
    metering.meter_instance(failed, now=timezone.now() + timedelta(minutes=5))
    billed = UsageRecord.objects.filter(resource_id=str(failed.pk)).aggregate(s=Sum("quantity_seconds"))["s"]
    expected = int(
        (
            event.created_at.replace(microsecond=0) - instance.billing_since.replace(microsecond=0)
        ).total_seconds()
    )
    assert billed == expected == failed.billed_seconds() >= READY_TIMEOUT
    assert wallet_of(tenant.actor.tenant).burn_rate_per_hour == 0

    # An email tells the owner why.
    (email,) = [m for m in mail.outbox if "not_ready" in m.subject]
    assert tenant.actor.user.email in email.to
    assert "never became ready" in email.body
