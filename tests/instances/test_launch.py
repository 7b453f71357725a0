"""Launching through the API: the happy path, idempotency, quota, capacity and suspended tenants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.catalog.models import GpuType, Image, NodeState, RegionCapacity, RegionNode
from apps.instances.models import Instance, InstanceEvent
from apps.operator import tasks
from apps.quotas.models import TenantQuota
from apps.quotas.services import quota_for
from apps.tenants.models import TenantStatus

pytestmark = pytest.mark.django_db


def test_launch_creates_a_pending_instance_with_the_price_frozen(
    tenant_owner, ssh_key, launch, catalog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = launch(
            tenant_owner,
            name="train-1",
            ssh_key_ids=[str(ssh_key.pk)],
            env={"WANDB_PROJECT": "llm"},
            command=["python", "train.py"],
            auto_stop_after=3600,
            max_runtime=7200,
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "train-1"
    assert body["state"] == "pending"
    assert body["desired_state"] == "running"
    assert body["region"] == "us-east-1"
    assert body["instance_type"] == "gpu-h100x1"
    assert body["gpu_type"] == "h100-80gb"
    assert body["gpu_count"] == 1
    assert body["image"] == "nvcr.io/nvidia/pytorch:24.08-py3"
    assert body["ssh_key_ids"] == [str(ssh_key.pk)]
    assert body["env_names"] == ["WANDB_PROJECT"]
    assert "llm" not in response.content.decode()  # env values may be secrets
    assert body["command"] == ["python", "train.py"]
    assert (body["auto_stop_after"], body["max_runtime"]) == (3600, 7200)
    assert body["price_per_hour"] == "2.4900"
    assert body["cost_so_far"] == "0.0000"
    assert body["allowed_actions"] == ["stop", "terminate"]
    assert body["connection"] == {}

    instance = Instance.objects.get(pk=body["id"])
    assert instance.tenant == tenant_owner.tenant
    assert instance.created_by == tenant_owner.user
    assert instance.env == {"WANDB_PROJECT": "llm"}

    # The price is frozen: a later change of the catalog does not move it.
    itype = catalog.instance_type("gpu-h100x1")
    itype.price_per_hour = Decimal("9.9900")
    itype.save()
    assert (
        tenant_owner.token_client()
        .get(tenant_owner.url(f"/instances/{instance.pk}"))
        .json()["price_per_hour"]
        == "2.4900"
    )

    event = InstanceEvent.objects.get(instance=instance)
    assert (event.kind, event.name, event.from_state, event.to_state) == ("action", "launch", "", "pending")
    assert event.actor_label == tenant_owner.user.email
    audit = AuditEvent.objects.get(action="instance.launch")
    assert audit.tenant == tenant_owner.tenant
    assert audit.target_id == str(instance.pk)
    assert audit.changes["instance_type"] == "gpu-h100x1"
    assert audit.actor_token == tenant_owner.token
    assert len(callbacks) == 1


def test_launch_queues_reconcile_once_committed(
    tenant_owner, launch, monkeypatch, django_capture_on_commit_callbacks
):
    queued: list[tuple[str, dict, int]] = []
    monkeypatch.setattr(
        tasks.reconcile_instance,
        "apply_async",
        lambda args, kwargs, countdown: queued.append((args[0], kwargs, countdown)),
    )

    with django_capture_on_commit_callbacks() as callbacks:
        response = launch(tenant_owner)
        assert queued == []  # nothing reaches the operator before the commit

    for callback in callbacks:
        callback()
    # The fallback, a few seconds after the leader's LISTEN has reconciled it (docs/operator.md), with the
    # generation and state the launch left, so that it does nothing once the instance has moved on.
    left = {"generation": 1, "state": "pending"}
    assert queued == [
        (response.json()["id"], {"unless_moved_on_from": left}, settings.RECONCILE_FALLBACK_SECONDS)
    ]


def test_launch_without_a_cluster_stays_pending_after_reconcile(
    tenant_owner, launch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = launch(tenant_owner)

    assert Instance.objects.get(pk=response.json()["id"]).state == "pending"


def test_launch_generates_a_name_when_omitted(tenant_owner, launch):
    first = launch(tenant_owner)
    second = launch(tenant_owner)

    assert first.status_code == second.status_code == 201
    names = {first.json()["name"], second.json()["name"]}
    assert len(names) == 2
    assert all(name.startswith("gpu-h100x1-") for name in names)


def test_same_idempotency_key_twice_gives_one_instance_and_the_same_response(tenant_owner, launch):
    headers = {"Idempotency-Key": "launch-42"}

    first = launch(tenant_owner, headers=headers, name="once")
    second = launch(tenant_owner, headers=headers, name="once")

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert Instance.objects.filter(tenant=tenant_owner.tenant).count() == 1
    assert AuditEvent.objects.filter(action="instance.launch").count() == 1


def test_same_idempotency_key_with_another_body_is_refused(tenant_owner, launch):
    headers = {"Idempotency-Key": "launch-43"}
    assert launch(tenant_owner, headers=headers, name="first").status_code == 201

    response = launch(tenant_owner, headers=headers, name="second")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert list(Instance.objects.values_list("name", flat=True)) == ["first"]


def test_a_refused_launch_does_not_burn_its_idempotency_key(tenant_owner, launch):
    headers = {"Idempotency-Key": "launch-44"}
    assert launch(tenant_owner, headers=headers, region="mars-1").status_code == 400

    assert launch(tenant_owner, headers=headers).status_code == 201


def test_quota_refusal_names_the_resource_limit_and_use(tenant_owner, launch):
    quota_for(tenant_owner.tenant)
    TenantQuota.objects.filter(tenant=tenant_owner.tenant).update(max_gpus=3)
    assert launch(tenant_owner, instance_type="gpu-h100x2").status_code == 201

    response = launch(tenant_owner, instance_type="gpu-h100x2")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"resource": "gpus", "limit": 3, "used": 2, "requested": 2}
    assert Instance.objects.filter(tenant=tenant_owner.tenant).count() == 1


def test_instance_quota_refusal(tenant_owner, launch):
    quota_for(tenant_owner.tenant)
    TenantQuota.objects.filter(tenant=tenant_owner.tenant).update(max_instances=1)
    assert launch(tenant_owner, instance_type="cpu-4x").status_code == 201

    response = launch(tenant_owner, instance_type="cpu-4x")

    assert response.status_code == 409
    assert response.json()["error"]["details"] == {
        "resource": "instances",
        "limit": 1,
        "used": 1,
        "requested": 1,
    }


def test_no_capacity_is_refused_at_once(tenant_owner, launch, catalog):
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type__slug="h100-80gb").update(gpus=0)

    response = launch(tenant_owner)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_capacity"
    # Capacity is checked after the launch's writes (the pool's lock is taken last): all rolled back.
    assert not Instance.objects.exists()
    assert not InstanceEvent.objects.exists()
    assert not AuditEvent.objects.filter(action="instance.launch").exists()


def test_no_capacity_when_the_pool_is_full(tenant_owner, launch):
    for _ in range(7):  # the us-east-1 MIG pool: one H100 cut into seven 1g.10gb slices
        assert launch(tenant_owner, instance_type="gpu-h100-mig-1g10gb").status_code == 201

    response = launch(tenant_owner, instance_type="gpu-h100-mig-1g10gb")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_capacity"


def test_no_capacity_when_the_pool_has_gpus_but_no_node_has_room(tenant_owner, launch, catalog):
    """The pool's sum says 4 x 8 GPUs; the operator's last look at the nodes found 4 taken on each of
    them (another tenant's pods, a staff pod): an 8-GPU instance fits nowhere, a 4-GPU one does."""
    for index in range(4):
        RegionNode.objects.create(
            region=catalog.us_east,
            name=f"us-east-1-h100-{index}",
            gpu_type=GpuType.objects.get(slug="h100-80gb"),
            gpu_product="NVIDIA-H100-80GB-HBM3",
            gpu_resource="nvidia.com/gpu",
            gpus_allocatable=8,
            gpus_requested=4,
            vcpu_allocatable=200,
            memory_allocatable_bytes=1750 * 1024**3,
            state=NodeState.READY,
            observed_at=timezone.now(),
        )

    response = launch(tenant_owner, instance_type="gpu-h100x8")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_capacity"
    assert not Instance.objects.exists()  # checked after the writes, as the pool: all rolled back
    assert launch(tenant_owner, instance_type="gpu-h100x4").status_code == 201


def test_region_in_maintenance_refuses_launches(tenant_owner, launch, catalog):
    catalog.us_east.status = "maintenance"
    catalog.us_east.save()

    response = launch(tenant_owner)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "region_unavailable"
    assert not Instance.objects.exists()


@pytest.fixture
def suspended(tenant_owner, launch):
    """The owner's tenant with one pending and one stopped instance, then suspended."""
    pending = Instance.objects.get(pk=launch(tenant_owner, name="pending").json()["id"])
    stopped = Instance.objects.get(pk=launch(tenant_owner, name="stopped").json()["id"])
    Instance.objects.filter(pk=stopped.pk).update(state="stopped", desired_state="stopped")
    tenant_owner.tenant.status = TenantStatus.SUSPENDED
    tenant_owner.tenant.status_reason = "Payment overdue."
    tenant_owner.tenant.save()
    return pending, stopped


def test_suspended_tenant_cannot_launch(tenant_owner, launch, suspended):
    response = launch(tenant_owner, name="another")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    assert "Payment overdue." in response.json()["error"]["message"]
    assert Instance.objects.count() == 2


def test_suspended_tenant_cannot_start(tenant_owner, suspended):
    _pending, stopped = suspended

    response = tenant_owner.token_client().post(tenant_owner.url(f"/instances/{stopped.pk}/start"))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"
    stopped.refresh_from_db()
    assert stopped.state == "stopped"


def test_suspended_tenant_can_stop_and_terminate(tenant_owner, suspended):
    pending, stopped = suspended
    client = tenant_owner.token_client()

    stop = client.post(tenant_owner.url(f"/instances/{pending.pk}/stop"))
    terminate = client.delete(tenant_owner.url(f"/instances/{stopped.pk}"))

    assert stop.status_code == 202, stop.json()
    assert stop.json()["state"] == "stopping"
    assert terminate.status_code == 202, terminate.json()
    assert terminate.json()["state"] == "terminating"


def test_suspended_tenant_still_reads_its_instances(tenant_owner, suspended):
    response = tenant_owner.token_client().get(tenant_owner.url("/instances"))

    assert response.status_code == 200
    assert response.json()["count"] == 2


def test_a_curated_images_own_command_runs_when_the_launch_names_none(tenant_owner, ssh_key, launch, catalog):
    """The operator never reads an image's configuration from its registry: staff record what a curated image
    runs (Image.command), and a launch without a command of its own freezes that one on the instance."""
    own = launch(tenant_owner, name="nb-1", image="jupyter", ssh_key_ids=[str(ssh_key.pk)])
    assert own.status_code == 201, own.json()
    jupyter = Image.objects.get(slug="jupyter")
    assert jupyter.command and own.json()["command"] == jupyter.command
    assert Instance.objects.get(pk=own.json()["id"]).command == jupyter.command

    theirs = launch(tenant_owner, name="nb-2", image="jupyter", command=["python3", "serve.py"])
    assert theirs.json()["command"] == ["python3", "serve.py"]  # the launch's own command wins

    # An image with no recorded command: the SSH server alone runs.
    plain = launch(tenant_owner, name="dev-1", image="cuda-12")
    assert plain.json()["command"] == []

    # Frozen at launch: staff changing the image later does not change an instance's command.
    recorded = list(jupyter.command)
    jupyter.command = ["something-else"]
    jupyter.save()
    assert Instance.objects.get(pk=own.json()["id"]).command == recorded
