"""Launches that cannot run, against the Kubernetes sandbox: the cluster's own verdict becomes the instance's
failure, with the cluster's message. Nothing is mocked; only the grace periods are shortened (see each test).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from kubernetes import client

from apps.catalog.models import ImagePolicy, InstanceType
from apps.operator import observe
from apps.quotas.services import quota_for
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for

pytestmark = pytest.mark.django_db


def _unschedulable(pod: client.V1Pod | None) -> client.V1PodCondition | None:
    for condition in (pod.status.conditions if pod and pod.status else None) or []:
        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
            return condition
    return None


def _pull_error(pod: client.V1Pod | None) -> client.V1ContainerStateWaiting | None:
    for status in (pod.status.container_statuses if pod and pod.status else None) or []:
        if status.state and status.state.waiting and status.state.waiting.reason == "ErrImagePull":
            return status.state.waiting
    return None


@pytest.fixture
def tenant(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, tenant_owner: Actor
) -> Iterator[SandboxTenant]:
    connect(catalog.us_east, sandbox)
    sandbox_tenant = SandboxTenant(actor=tenant_owner, kube_clients=kube_clients)
    yield sandbox_tenant
    sandbox_tenant.cleanup()


def test_more_gpus_than_any_node_has_fails_no_capacity_with_the_schedulers_reason(
    tenant: SandboxTenant, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod asking for 16 H100s fits no node (the largest has 8): the real kube-scheduler marks it
    PodScheduled=False/Unschedulable and the instance fails no_capacity with the scheduler's message.

    Our own admission lets it through on purpose (an instance type of 16 GPUs, a quota of 16, the region's
    declared pool of 32), so that the cluster is what refuses. The pod status is real; only the grace before
    an unschedulable pod counts as failed (60 s) is shortened to zero, to keep the test fast."""
    monkeypatch.setattr(observe, "UNSCHEDULABLE_TIMEOUT", timedelta(0))
    h100 = catalog.instance_type("gpu-h100x8")
    InstanceType.objects.create(
        slug="gpu-h100x16",
        name="16 x H100",
        gpu_type=h100.gpu_type,
        gpu_count=16,
        vcpu=32,
        memory_gib=256,
        price_per_hour=Decimal("64.00"),
    )
    quota = quota_for(tenant.actor.tenant)
    quota.max_gpus = 16
    quota.save()

    launched = tenant.launch(instance_type="gpu-h100x16", region="us-east-1", image="pytorch")
    scheduled = wait_for(
        lambda: _unschedulable(tenant.read_pod(launched["id"])), what="the scheduler's verdict"
    )
    assert "Insufficient nvidia.com/gpu" in scheduled.message  # "0/11 nodes are available: 4 Insufficient..."
    failed = drive(launched["id"], state_is("failed"), what="failed")

    assert failed.failure_reason == "no_capacity"
    assert failed.state_message == scheduled.message
    detail = tenant.detail(launched["id"])
    assert (detail["state"], detail["failure_reason"]) == ("failed", "no_capacity")
    assert detail["state_message"] == scheduled.message
    events = tenant.actor.token_client().get(tenant.actor.url(f"/instances/{launched['id']}/events")).json()
    failures = [e for e in events["results"] if e["to_state"] == "failed"]
    assert [(e["reason"], e["message"]) for e in failures] == [("no_capacity", scheduled.message)]
    # A failed instance holds no GPU: its pending pod is deleted.
    drive(launched["id"], lambda _: tenant.read_pod(launched["id"]) is None, what="without a pod")


def test_unknown_image_fails_image_pull_error(tenant: SandboxTenant, monkeypatch: pytest.MonkeyPatch) -> None:
    """kwok pulls no images, so the sandbox simulates the pull failure: its kwok stage
    `sandbox/stages/pod-image-pull-error.yaml` gives pods whose image is under the reserved, unresolvable
    registry `images.invalid/` exactly the status a kubelet reports (container waiting, reason ErrImagePull,
    the kubelet's message) instead of making them Running. The pod, its scheduling and its status are real
    API objects; only the grace before a pull error counts as failed (120 s) is shortened to zero."""
    monkeypatch.setattr(observe, "IMAGE_PULL_GRACE", timedelta(0))
    policy = ImagePolicy.current()
    policy.allow_custom_images, policy.allowed_registries = True, ["images.invalid"]
    policy.save()

    launched = tenant.launch(instance_type="cpu-4x", region="us-east-1", image="images.invalid/nope:1")
    assert launched["image"] == "images.invalid/nope:1"
    waiting = wait_for(lambda: _pull_error(tenant.read_pod(launched["id"])), what="the pull error")
    assert waiting.reason == "ErrImagePull"
    assert "images.invalid/nope:1" in waiting.message and "no such host" in waiting.message
    failed = drive(launched["id"], state_is("failed"), what="failed")

    assert failed.failure_reason == "image_pull_error"
    assert failed.state_message == waiting.message
    detail = tenant.detail(launched["id"])
    assert (detail["state"], detail["failure_reason"]) == ("failed", "image_pull_error")
    drive(launched["id"], lambda _: tenant.read_pod(launched["id"]) is None, what="without a pod")


def test_a_good_image_is_not_affected_by_the_pull_failure_stage(
    tenant: SandboxTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counterpart of the test above: the same launch with a registry that is not `images.invalid`
    runs (the stage matches only that registry), with the grace shortened just the same."""
    monkeypatch.setattr(observe, "IMAGE_PULL_GRACE", timedelta(0))
    policy = ImagePolicy.current()
    policy.allow_custom_images, policy.allowed_registries = True, ["ghcr.io"]
    policy.save()

    launched = tenant.launch(instance_type="cpu-4x", region="us-east-1", image="ghcr.io/example/ok:1")
    running = drive(launched["id"], state_is("running"), what="running")
    assert running.failure_reason == ""
