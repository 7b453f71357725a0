"""The operator reconciles a launch as it commits, against the sandbox, nothing mocked: the worker's task
(the fallback) is disconnected and the resync is an hour away, so only the leader's LISTEN can create the
pod (apps/operator/changes.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from apps.instances.models import Instance
from apps.instances.signals import instance_changed
from apps.operator import receivers
from apps.operator.operator_loop import Operator
from tests.instances.helpers import seed
from tests.operator.sandbox_support import SandboxTenant, connect, wait_for
from tests.operator.test_operator_sandbox import FAST, TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_fallback_task() -> Iterator[None]:
    instance_changed.disconnect(dispatch_uid="operator-instance")
    try:
        yield
    finally:
        instance_changed.connect(receivers.reconcile_changed_instance, dispatch_uid="operator-instance")


def test_the_leader_creates_a_launch_as_it_commits(
    sandbox: Any, tenant: SandboxTenant, no_fallback_task: None
) -> None:
    region = connect(seed().us_east, sandbox)
    operator = Operator(dataclasses.replace(FAST, resync_seconds=3600.0), regions=[region.slug]).start()
    try:
        thread = wait_for(lambda: operator.threads.get(region.pk), what="the region thread", timeout=TIMEOUT)
        wait_for(lambda: thread.resyncs >= 1, what="the first resync", timeout=TIMEOUT)
        wait_for(
            lambda: thread.changes is not None and thread.changes.listening.is_set(),
            what="the change listener",
            timeout=TIMEOUT,
        )
        launched = tenant.launch(
            instance_type="gpu-h100x1", region="us-east-1", image="pytorch", name="heard"
        )
        wait_for(
            lambda: Instance.objects.get(pk=launched["id"]).state == "running",
            what="the instance running without task or resync",
            timeout=TIMEOUT,
        )
        assert thread.resyncs == 1
    finally:
        operator.shutdown()
