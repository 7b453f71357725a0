"""The hand-written instance JSON (apps/instances/api/representation.py) equals what DRF's generic path makes
of InstanceSerializer's declared fields, which the OpenAPI schema documents, for every kind of value; and a
page is one query whatever its length."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from apps.accounts import services as account_services
from apps.accounts.models import SshKey
from apps.instances import selectors
from apps.instances.api.serializers import InstanceSerializer
from apps.instances.models import Instance
from apps.storage import services as storage_services
from apps.storage.models import Volume, VolumeAttachment, VolumeState
from tests.conftest import Actor
from tests.instances.helpers import ed25519_public_key

NOW = datetime(2026, 11, 26, 12, 0, 30, 123456, tzinfo=UTC)


def rendered(data: Any) -> Any:
    return json.loads(JSONRenderer().render(data))


def generic(instance: Instance) -> Any:
    """What ModelSerializer itself makes of the declared fields."""
    return rendered(serializers.ModelSerializer.to_representation(InstanceSerializer(), instance))


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


def _key(actor: Actor, name: str) -> SshKey:
    return account_services.ssh_key_create(
        actor=actor.user, tenant=actor.tenant, name=name, public_key=ed25519_public_key(name)
    )


def _attached_volume(actor: Actor, instance: Instance, name: str, mount_path: str) -> VolumeAttachment:
    volume = storage_services.volume_create(
        actor=actor.user, tenant=actor.tenant, name=name, size_gib=20, region="us-east-1"
    )
    Volume.objects.filter(pk=volume.pk).update(state=VolumeState.IN_USE)
    return VolumeAttachment.objects.create(
        instance=instance, volume=volume, mount_path=mount_path, delete_with_instance=True
    )


def test_every_kind_of_instance_renders_as_the_declared_fields_do(
    tenant_owner: Actor, make_instance: Callable[..., Instance], frozen_now: datetime
) -> None:
    owner = tenant_owner
    running = make_instance(
        owner.tenant,
        created_by=owner.user,
        state="running",
        running_since=NOW - timedelta(seconds=4321, microseconds=500),
        accrued_running_seconds=77,
        env={"WANDB_PROJECT": "llm", "A_FIRST": "x"},
        command=["python", "train.py", "--lr", "0.1"],
        connection={"host": "203.0.113.7", "port": 30022, "user": "root"},
        auto_stop_after=3600,
        max_runtime=7200,
    )
    running.ssh_keys.set([_key(owner, "laptop"), _key(owner, "desktop")])
    _attached_volume(owner, running, "datasets", "/data")
    _attached_volume(owner, running, "checkpoints", "/ckpt")
    cpu_only = make_instance(owner.tenant, created_by=owner.user, state="pending", instance_type="cpu-4x")
    failed = make_instance(
        owner.tenant,
        created_by=owner.user,
        state="failed",
        failure_reason="no_capacity",
        state_message="No node with a free H100 could take it.",
    )
    stopped = make_instance(
        owner.tenant, created_by=owner.user, state="stopped", stopped_at=NOW - timedelta(minutes=3)
    )
    terminated = make_instance(
        owner.tenant,
        created_by=owner.user,
        state="terminated",
        desired_state="terminated",
        terminated_at=NOW - timedelta(days=2),
        price_per_hour=Decimal("2.5"),
    )
    ids = [running.pk, cpu_only.pk, failed.pk, stopped.pk, terminated.pk]
    page = list(selectors.instances_for_api(tenant=owner.tenant).filter(pk__in=ids))
    declared = list(selectors.instances_of(tenant=owner.tenant).filter(pk__in=ids))
    assert [i.pk for i in page] == [i.pk for i in declared] and len(page) == 5

    ours = rendered(InstanceSerializer(page, many=True).data)

    assert ours == [generic(instance) for instance in declared]
    # One instance (the detail view), and one loaded without the joined slugs, render the same.
    assert rendered(InstanceSerializer(page[0]).data) == ours[0]
    assert rendered(InstanceSerializer(Instance.objects.get(pk=page[0].pk)).data) == ours[0]
    by_id = {item["id"]: item for item in ours}
    shown = by_id[str(running.pk)]
    assert shown["running_seconds"] == 77 + 4321 and shown["cost_so_far"] != "0.0000"
    assert len(shown["ssh_key_ids"]) == 2 and len(shown["volumes"]) == 2
    assert shown["env_names"] == ["A_FIRST", "WANDB_PROJECT"]
    assert by_id[str(cpu_only.pk)]["gpu_type"] is None
    assert by_id[str(terminated.pk)]["price_per_hour"] == "2.5000"
    assert list(shown) == list(InstanceSerializer().fields)  # same fields, same order as declared


def test_a_page_is_one_query_whatever_its_length(
    tenant_owner: Actor, make_instance: Callable[..., Instance], django_assert_num_queries: Any
) -> None:
    owner = tenant_owner
    first = make_instance(owner.tenant, created_by=owner.user)
    first.ssh_keys.set([_key(owner, "laptop")])
    _attached_volume(owner, first, "datasets", "/data")
    for _ in range(30):
        make_instance(owner.tenant, created_by=owner.user, instance_type="cpu-4x")
    with django_assert_num_queries(1):
        few = list(selectors.instances_for_api(tenant=owner.tenant)[:2])
    with django_assert_num_queries(1):
        many = list(selectors.instances_for_api(tenant=owner.tenant))
    with django_assert_num_queries(0):  # everything came with the rows
        few_data = InstanceSerializer(few, many=True).data
        many_data = InstanceSerializer(many, many=True).data
    assert len(few_data) == 2 and len(many_data) == 31
    assert [item["ssh_key_ids"] for item in many_data if item["volumes"]] == [[str(first.ssh_keys.get().pk)]]


def test_the_columns_built_in_memory_are_the_ones_the_list_query_adds(
    tenant_owner: Actor, make_instance: Callable[..., Instance]
) -> None:
    """selectors.api_columns (a launch's response, an instance loaded without them) against the SQL of
    instances_for_api, for an instance with keys and volumes and one with none and no GPU."""
    owner = tenant_owner
    full = make_instance(owner.tenant, created_by=owner.user)
    full.ssh_keys.set([_key(owner, "laptop"), _key(owner, "desktop")])
    _attached_volume(owner, full, "datasets", "/data")
    _attached_volume(owner, full, "checkpoints", "/ckpt")
    bare = make_instance(owner.tenant, created_by=owner.user, instance_type="cpu-4x")
    names = ("region_slug", "instance_type_slug", "gpu_type_slug", "ssh_key_id_list", "attachment_list")

    def plain(columns: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({name: columns[name] for name in names}, default=str))

    for instance in (full, bare):
        row = selectors.instances_for_api(tenant=owner.tenant).get(pk=instance.pk)
        loaded = Instance.objects.get(pk=instance.pk)
        built = selectors.api_columns(
            loaded,
            gpu_type=loaded.gpu_type,
            ssh_keys=loaded.ssh_keys.order_by("name", "id"),
            attachments=loaded.volume_attachments.select_related("volume").order_by("mount_path", "id"),
        )
        assert plain(built) == plain(row.__dict__)
    assert plain(row.__dict__)["gpu_type_slug"] is None and plain(row.__dict__)["attachment_list"] == []
    with_volumes = selectors.instances_for_api(tenant=owner.tenant).get(pk=full.pk).__dict__
    assert [a["mount_path"] for a in with_volumes["attachment_list"]] == ["/ckpt", "/data"]
    assert set(with_volumes["attachment_list"][0]) == {
        "volume_id", "name", "mount_path", "size_gib", "access_mode", "state", "delete_with_instance"
    }  # fmt: skip
