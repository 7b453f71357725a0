"""An instance as the API shows it, written out by hand.

InstanceSerializer declares the fields (the OpenAPI schema is built from them) but renders through
`instance_json`, from one row of selectors.instances_for_api: DRF's generic path runs a field object per
value, and the catalog joins and relation prefetches it needed made up most of the time of a 50-row list
page (docs/benchmarks.md). tests/instances/api/test_representation.py keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from apps.instances import selectors
from apps.instances.models import Instance
from apps.instances.states import State, allowed_actions

PRICE_PLACES = Decimal("0.0001")


def iso(moment: datetime | None, tz: tzinfo) -> str | None:
    """DRF's DateTimeField output: ISO 8601 in the current time zone, UTC written as Z."""
    if moment is None:
        return None
    text = moment.astimezone(tz).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def attachment_json(row: dict[str, Any]) -> dict[str, Any]:
    """One of the attachments selectors.instances_for_api puts on each row, in the declared order."""
    return {
        "volume_id": str(row["volume_id"]),
        "name": row["name"],
        "mount_path": row["mount_path"],
        "size_gib": row["size_gib"],
        "access_mode": row["access_mode"],
        "state": row["state"],
        "delete_with_instance": row["delete_with_instance"],
    }


def _joined(instance: Instance) -> dict[str, Any]:
    """What selectors.instances_for_api adds to each row; read from the relations for an instance loaded
    otherwise (a few more queries, fine for one)."""
    if "attachment_list" in instance.__dict__:
        return instance.__dict__
    return selectors.api_columns(
        instance,
        gpu_type=instance.gpu_type,
        ssh_keys=instance.ssh_keys.all(),
        attachments=instance.volume_attachments.select_related("volume").order_by("mount_path", "id"),
    )


def instance_json(
    instance: Instance, *, now: datetime | None = None, tz: tzinfo | None = None
) -> dict[str, Any]:
    now = now or timezone.now()
    tz = tz or timezone.get_current_timezone()
    joined = _joined(instance)
    return {
        "id": str(instance.id),
        "name": instance.name,
        "tags": dict(sorted(instance.tags.items())),
        "state": instance.state,
        "desired_state": instance.desired_state,
        "failure_reason": instance.failure_reason,
        "state_message": instance.state_message,
        "allowed_actions": allowed_actions(State(instance.state)),
        "region": joined["region_slug"],
        "zone": instance.zone,
        "instance_type": joined["instance_type_slug"],
        "gpu_type": joined["gpu_type_slug"],
        "gpu_count": instance.gpu_count,
        "vcpu": instance.vcpu,
        "memory_gib": instance.memory_gib,
        "ephemeral_disk_gib": instance.ephemeral_disk_gib,
        "image": instance.image_reference,
        "ssh_key_ids": [str(key_id) for key_id in joined["ssh_key_id_list"]],
        "volumes": [attachment_json(row) for row in joined["attachment_list"]],
        "env_names": sorted(instance.env),
        "command": instance.command,
        "auto_stop_after": instance.auto_stop_after,
        "max_runtime": instance.max_runtime,
        "price_per_hour": f"{Decimal(instance.price_per_hour).quantize(PRICE_PLACES):f}",
        "cost_so_far": str(instance.cost_so_far(now)),
        "running_seconds": instance.running_seconds(now),
        "billed_seconds": instance.billed_seconds(now),
        "connection": instance.connection,
        "cluster": str(instance.cluster_id) if instance.cluster_id is not None else None,
        "rank": instance.rank,
        "created_at": iso(instance.created_at, tz),
        "updated_at": iso(instance.updated_at, tz),
        "running_since": iso(instance.running_since, tz),
        "billing_since": iso(instance.billing_since, tz),
        "state_changed_at": iso(instance.state_changed_at, tz),
        "stopped_at": iso(instance.stopped_at, tz),
        "terminated_at": iso(instance.terminated_at, tz),
    }


def instances_json(instances: Iterable[Instance]) -> list[dict[str, Any]]:
    """A page, with one clock reading for all of it."""
    now, tz = timezone.now(), timezone.get_current_timezone()
    return [instance_json(instance, now=now, tz=tz) for instance in instances]


class InstanceListSerializer(serializers.ListSerializer):
    """InstanceSerializer(many=True): the page with one clock reading (instances_json)."""

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        return instances_json(data.all() if hasattr(data, "all") else data)
