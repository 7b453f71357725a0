"""Writes for volumes: create, resize, rename, delete; attaching at launch and releasing at terminate; what
the operator observes of the claims.

Lock order, as for instances: the tenant's quota row, then volume rows (by primary key), then instance rows.
Each change the operator must act on sends `volume_changed` once the transaction commits
(apps/storage/signals.py).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.catalog import selectors as catalog
from apps.catalog.models import Region, StorageAccessMode
from apps.core import request_context
from apps.core import tags as core_tags
from apps.core.errors import Conflict
from apps.core.funds import require_funds
from apps.core.validation import check_name, invalid
from apps.quotas.services import Demand, admit
from apps.storage import validation
from apps.storage.models import ATTACHABLE, Volume, VolumeAttachment, VolumeEvent, VolumeState
from apps.storage.signals import volume_bound, volume_changed
from apps.tenants.models import Tenant


class VolumeInvalidState(Conflict):
    code = "invalid_state"


class VolumeAttached(Conflict):
    code = "volume_attached"


class VolumeInUse(Conflict):
    code = "volume_in_use"


TENANT_CLOSED_REASON = "tenant closed"


def _queue_reconcile(volume: Volume) -> None:
    """Once this commits, the operator reconciles the volume (apps.operator handles volume_changed)."""
    volume_id = str(volume.pk)
    transaction.on_commit(lambda: volume_changed.send(sender=Volume, volume_id=volume_id))


def _event(volume: Volume, *, name: str, from_state: str, actor: User | None, message: str = "") -> None:
    VolumeEvent.objects.create(
        volume=volume,
        name=name,
        size_gib=volume.size_gib,
        from_state=from_state,
        to_state=volume.state,
        message=message[:500],
        actor_label=actor.email if actor is not None else f"system:{request_context.current().via}",
    )


def live_attachments(volume: Volume) -> Any:
    """Attachments to instances that are not terminated: what holds the volume."""
    return VolumeAttachment.objects.filter(volume=volume).live()


def _settled_state(volume: Volume) -> str:
    return VolumeState.IN_USE if live_attachments(volume).exists() else VolumeState.AVAILABLE


def _locked(volume_id: Any) -> Volume | None:
    return (
        Volume.objects.select_for_update(of=("self",))
        .select_related("tenant", "region")
        .filter(pk=volume_id)
        .first()
    )


def _save(volume: Volume, *, field: str, name: str) -> None:
    try:
        with transaction.atomic():
            volume.save()
    except IntegrityError as exc:
        raise invalid(
            field, f"A volume named '{name}' already exists in region {volume.region.slug}."
        ) from exc


@transaction.atomic
def volume_create(
    *, actor: User, tenant: Tenant, name: Any, size_gib: Any, region: Any, tags: Any = None, zone: Any = None
) -> Volume:
    if not isinstance(name, str):
        raise invalid("name", "Must be a string.")
    check_name(name)
    size = validation.check_size(size_gib)
    checked_tags = core_tags.check_tags(tags)
    found = Region.objects.filter(slug=region).first() if isinstance(region, str) else None
    if found is None:
        raise invalid("region", f"Unknown region '{region}'.")
    if not found.accepts_launches:
        raise Conflict(f"Region '{found.slug}' is in maintenance.", code="region_unavailable")
    checked_zone = catalog.check_zone(found, zone)
    if checked_zone and found.storage_access_mode == StorageAccessMode.READ_WRITE_MANY:
        raise invalid("zone", f"Volumes in {found.slug} are shared (ReadWriteMany): regional, with no zone.")
    # The new volume bills by the hour from now on: the wallet must carry it for the launch runway.
    require_funds(tenant=tenant, price_per_hour=size * Decimal(str(settings.VOLUME_PRICE_PER_GIB_HOUR)))
    admit(tenant=tenant, demand=Demand(volume_gib=size))
    volume = Volume(
        tenant=tenant,
        region=found,
        name=name,
        size_gib=size,
        storage_class=found.storage_class,
        access_mode=found.storage_access_mode,
        zone=checked_zone,
        price_per_gib_hour=settings.VOLUME_PRICE_PER_GIB_HOUR,
        state=VolumeState.CREATING,
        tags=checked_tags,
        created_by=actor,
    )
    _save(volume, field="name", name=name)
    _event(volume, name="created", from_state="", actor=actor)
    audit_record(
        actor=actor,
        action="volume.create",
        target=volume,
        tenant=tenant,
        changes={
            "name": name,
            "size_gib": size,
            "region": found.slug,
            "storage_class": found.storage_class,
            **({"zone": checked_zone} if checked_zone else {}),
            **({"tags": checked_tags} if checked_tags else {}),
        },
    )
    _queue_reconcile(volume)
    return volume


@transaction.atomic
def volume_resize(*, actor: User, volume: Volume, size_gib: Any) -> Volume:
    """Grow a volume (never shrink). Admitted against the quota for the added GiB."""
    size = validation.check_size(size_gib)
    if volume.state not in ATTACHABLE:
        raise VolumeInvalidState(
            f"A volume that is {volume.state} cannot be resized.", details={"state": volume.state}
        )
    if size < volume.size_gib:
        raise invalid("size_gib", f"Volumes only grow: the current size is {volume.size_gib} GiB.")
    if size == volume.size_gib:
        return volume
    if not volume.region.storage_expandable:
        raise invalid("size_gib", f"The storage class of region {volume.region.slug} cannot grow volumes.")
    require_funds(tenant=volume.tenant, price_per_hour=(size - volume.size_gib) * volume.price_per_gib_hour)
    admit(tenant=volume.tenant, demand=Demand(volume_gib=size - volume.size_gib))
    locked = _locked(volume.pk)
    if locked is None or locked.state not in ATTACHABLE or size <= locked.size_gib:
        raise VolumeInvalidState(
            "The volume changed meanwhile; read it again.",
            details={"state": locked.state if locked else VolumeState.DELETED},
        )
    before_state, before_size = locked.state, locked.size_gib
    locked.size_gib = size
    if locked.state in (VolumeState.AVAILABLE, VolumeState.IN_USE):
        locked.state = VolumeState.RESIZING
    locked.save(update_fields=["size_gib", "state", "updated_at"])
    _event(locked, name="resized", from_state=before_state, actor=actor)
    audit_record(
        actor=actor,
        action="volume.resize",
        target=locked,
        tenant=locked.tenant,
        changes={"size_gib": {"from": before_size, "to": size}},
    )
    _queue_reconcile(locked)
    return locked


@transaction.atomic
def volume_rename(*, actor: User, volume: Volume, name: Any) -> Volume:
    if not isinstance(name, str):
        raise invalid("name", "Must be a string.")
    check_name(name)
    locked = _locked(volume.pk)
    if locked is None or locked.state == VolumeState.DELETED:
        raise VolumeInvalidState(
            "A deleted volume cannot be renamed.", details={"state": VolumeState.DELETED}
        )
    before = locked.name
    if before == name:
        return locked
    locked.name = name
    _save(locked, field="name", name=name)
    audit_record(
        actor=actor,
        action="volume.rename",
        target=locked,
        tenant=locked.tenant,
        changes={"name": {"from": before, "to": name}},
    )
    return locked


@transaction.atomic
def volume_tags_update(*, actor: User, volume: Volume, changes: Any) -> Volume:
    """Change the volume's tags by a merge patch (apps/core/tags.py). Storage metered from now on carries
    the new tags. Audited as volume.tags."""
    patch = core_tags.check_changes(changes)
    locked = _locked(volume.pk)
    if locked is None or locked.state == VolumeState.DELETED:
        raise VolumeInvalidState(
            "A deleted volume's tags cannot change.", details={"state": VolumeState.DELETED}
        )
    before = dict(locked.tags)
    after = core_tags.merged(before, patch)
    if after == before:
        return locked
    locked.tags = after
    locked.save(update_fields=["tags", "updated_at"])
    audit_record(
        actor=actor,
        action="volume.tags",
        target=locked,
        tenant=locked.tenant,
        changes={"tags": {"from": before, "to": after}},
    )
    return locked


def _begin_delete(volume: Volume, *, actor: User | None, reason: str = "") -> None:
    before = volume.state
    volume.state = VolumeState.DELETING
    volume.save(update_fields=["state", "updated_at"])
    # Billing ends here: the customer can no longer use the volume.
    _event(volume, name="delete_requested", from_state=before, actor=actor, message=reason)
    audit_record(
        actor=actor,
        action="volume.delete",
        target=volume,
        tenant=volume.tenant,
        changes={"state": {"from": before, "to": volume.state}},
        metadata={"reason": reason} if reason else None,
    )
    _queue_reconcile(volume)


@transaction.atomic
def volume_delete(*, actor: User, volume: Volume, reason: str = "") -> Volume:
    """Delete a detached volume; 409 volume_attached while an instance that is not terminated holds it."""
    locked = _locked(volume.pk)
    if locked is None:
        raise VolumeInvalidState("The volume is gone.", details={"state": VolumeState.DELETED})
    if locked.state in (VolumeState.DELETING, VolumeState.DELETED):
        return locked  # asked twice: the same answer
    holders = list(live_attachments(locked).values_list("instance_id", flat=True))
    if holders:
        raise VolumeAttached(
            "The volume is attached to an instance that is not terminated; terminate it first "
            "(or terminate with delete_volumes=true).",
            details={"instance_ids": [str(i) for i in holders]},
        )
    _begin_delete(locked, actor=actor, reason=reason)
    return locked


def volumes_delete_for_closed_tenant(*, tenant: Tenant) -> int:
    """Begin deleting every volume of a closed tenant that is not being deleted yet, attached or not (the
    tenant can no longer act; its namespace is collected). Called inside tenant_close's transaction, so
    each volume's bill ends at the close. Idempotent; returns how many deletions began."""
    volumes = (
        Volume.objects.select_for_update(of=("self",))
        .select_related("tenant", "region")
        .filter(tenant=tenant)
        .exclude(state__in=(VolumeState.DELETING, VolumeState.DELETED))
        .order_by("pk")
    )
    begun = 0
    for volume in volumes:
        _begin_delete(volume, actor=None, reason=TENANT_CLOSED_REASON)
        begun += 1
    return begun


def require_volumes_usable(*, instance: Any) -> None:
    """Before a start or restart: 409 invalid_state, naming the volume, when an attached volume cannot be
    mounted (its claim was lost). The pod would otherwise wait for the claim forever."""
    for attachment in VolumeAttachment.objects.filter(instance=instance).select_related("volume"):
        volume = attachment.volume
        if volume.state not in ATTACHABLE:
            why = " (its claim lost its persistent volume)" if volume.state == VolumeState.FAILED else ""
            raise VolumeInvalidState(
                f"Volume '{volume.name}' at {attachment.mount_path} is {volume.state}{why} and cannot be "
                "mounted. Terminate the instance (its other volumes are kept) and delete the volume.",
                details={"volume_id": str(volume.pk), "state": volume.state},
            )


# ---- instances ----------------------------------------------------------------------------------------


def check_mount_requests(items: Any) -> list[tuple[str, str]]:
    """The launch body's `volumes` as (volume id, mount path) pairs, checked without the database."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise invalid("volumes", "Must be a list of {volume_id, mount_path} objects.")
    if len(items) > validation.MAX_VOLUMES_PER_INSTANCE:
        raise invalid("volumes", f"At most {validation.MAX_VOLUMES_PER_INSTANCE} volumes per instance.")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"volume_id", "mount_path"}:
            raise invalid("volumes", f"Item {index}: give exactly volume_id and mount_path.")
        try:
            volume_id = str(uuid.UUID(str(item["volume_id"])))
        except ValueError:
            raise invalid("volumes", f"Item {index}: volume_id is not a valid id.") from None
        problem = validation.mount_path_problem(item["mount_path"])
        if problem:
            raise invalid("volumes", f"Item {index}: mount_path: {problem}")
        pairs.append((volume_id, item["mount_path"]))
    if len({v for v, _ in pairs}) != len(pairs):
        raise invalid("volumes", "A volume is listed twice.")
    if len({p for _, p in pairs}) != len(pairs):
        raise invalid("volumes", "Two volumes share a mount path.")
    return pairs


def attach_at_launch(*, instance: Any, pairs: list[tuple[str, str]], actor: User) -> list[VolumeAttachment]:
    """Lock the named volumes of the instance's tenant and attach them. Call inside the launch's transaction,
    after admission (the quota lock comes first) and after the instance row is written."""
    if not pairs:
        return []
    wanted = dict(pairs)
    volumes = list(
        Volume.objects.select_for_update(of=("self",))
        .select_related("region", "tenant")
        .filter(tenant=instance.tenant, pk__in=list(wanted))
        .exclude(state=VolumeState.DELETED)
        .order_by("pk")
    )
    by_id = {str(v.pk): v for v in volumes}
    for volume_id, _ in pairs:
        volume = by_id.get(volume_id)
        if volume is None:  # another tenant's volume does not exist for this one
            raise invalid("volumes", f"Unknown volume {volume_id}.")
        if volume.region_id != instance.region_id:
            raise invalid(
                "volumes",
                f"Volume '{volume.name}' is in region {volume.region.slug}; the instance launches in "
                f"{instance.region.slug}.",
            )
        if volume.state not in ATTACHABLE:
            raise VolumeInvalidState(
                f"Volume '{volume.name}' is {volume.state} and cannot be attached.",
                details={"volume_id": volume_id, "state": volume.state},
            )
        holders = list(live_attachments(volume).values_list("instance_id", flat=True))
        if holders and not volume.multi_attach:
            raise VolumeInUse(
                f"Volume '{volume.name}' is ReadWriteOnce and attached to another instance.",
                details={"volume_id": volume_id, "instance_ids": [str(i) for i in holders]},
            )
    zone = _launch_zone(instance, volumes)
    if zone != instance.zone:
        instance.zone = zone
        instance.save(update_fields=["zone", "updated_at"])
    attachments = []
    for volume_id, mount_path in pairs:
        volume = by_id[volume_id]
        if not volume.zone and zone and not volume.multi_attach:
            volume.zone = zone
            volume.save(update_fields=["zone", "updated_at"])
        attachments.append(
            VolumeAttachment.objects.create(instance=instance, volume=volume, mount_path=mount_path)
        )
        if volume.state == VolumeState.AVAILABLE:
            volume.state = VolumeState.IN_USE
            volume.save(update_fields=["state", "updated_at"])
        _event(volume, name="attached", from_state=volume.state, actor=actor, message=f"{instance.pk}")
    return attachments


def _launch_zone(instance: Any, volumes: list[Volume]) -> str:
    """The zone an instance launched with volumes runs in (docs/networking.md "Zones"): its volumes' (they
    must agree with each other and with the zone the launch named), else the zone the launch named, else,
    in a region with zones, the one with the most room for its type now; the volumes that have no zone yet
    are placed there with it, so its later starts find them on the same side. A volume several instances
    mount at once (ReadWriteMany: a shared filesystem) is regional and has no say."""
    zonal = [v for v in volumes if not v.multi_attach]
    placed = sorted({v.zone for v in zonal if v.zone})
    if len(placed) > 1:
        raise invalid("volumes", f"The volumes are in different zones ({', '.join(placed)}); use one zone's.")
    if placed and instance.zone and instance.zone != placed[0]:
        name = next(v.name for v in zonal if v.zone == placed[0])
        raise invalid(
            "zone", f"Volume '{name}' is in zone {placed[0]}; the launch asks for zone {instance.zone}."
        )
    if placed or instance.zone:
        return str(placed[0] if placed else instance.zone)
    if not zonal:
        return ""
    zones = catalog.zones_of(instance.region)
    if not zones:
        return ""
    region, instance_type = instance.region, instance.instance_type
    room = {z: catalog.node_room(region=region, instance_type=instance_type, zone=z) or 0 for z in zones}
    return max(zones, key=lambda z: (room[z], -zones.index(z)))


def delete_with_instance(*, instance: Any) -> int:
    """terminate(delete_volumes=true): the instance's volumes are deleted once it is terminated."""
    return VolumeAttachment.objects.filter(instance=instance).update(delete_with_instance=True)


def release_for_terminated(*, instance: Any) -> None:
    """The instance is terminated: its volumes are free again, or deleted if asked. Call after the
    instance's terminated state is saved, inside the same transaction."""
    for attachment in VolumeAttachment.objects.filter(instance=instance).order_by("volume_id"):
        volume = _locked(attachment.volume_id)
        if volume is None or volume.state in (VolumeState.DELETING, VolumeState.DELETED):
            continue
        still_held = live_attachments(volume).exists()
        if attachment.delete_with_instance and not still_held:
            _begin_delete(volume, actor=None, reason=f"terminated with instance {instance.pk}")
        elif volume.state == VolumeState.IN_USE and not still_held:
            volume.state = VolumeState.AVAILABLE
            volume.save(update_fields=["state", "updated_at"])
            _event(
                volume, name="detached", from_state=VolumeState.IN_USE, actor=None, message=f"{instance.pk}"
            )


# ---- what the operator observes ------------------------------------------------------------------------


@transaction.atomic
def volume_observe(
    *, volume_id: Any, observation: str, capacity_gib: int | None = None, message: str = ""
) -> Volume | None:
    """`bound` (the claim is bound, with `capacity_gib`), `resized` (the claim's capacity reached the
    size), `gone` (the claim no longer exists) or `lost`. Stale or repeated observations change nothing."""
    volume = _locked(volume_id)
    if volume is None:
        return None
    before = volume.state
    if observation == "bound" and before == VolumeState.CREATING:
        grown = capacity_gib is not None and capacity_gib < volume.size_gib
        volume.state = VolumeState.RESIZING if grown else _settled_state(volume)
    elif observation == "resized" and before == VolumeState.RESIZING:
        volume.state = _settled_state(volume)
    elif observation == "gone" and before == VolumeState.DELETING:
        volume.state, volume.deleted_at = VolumeState.DELETED, timezone.now()
    elif observation == "lost" and before not in (VolumeState.DELETING, VolumeState.DELETED):
        volume.state = VolumeState.FAILED
        volume.state_message = message[:500]
    else:
        return None
    volume.save(update_fields=["state", "state_message", "deleted_at", "updated_at"])
    _event(volume, name=observation, from_state=before, actor=None, message=message)
    if observation == "bound":
        _queue_instances_waiting_for(volume)
    return volume


def _queue_instances_waiting_for(volume: Volume) -> None:
    """Instances launched with this volume wait for its claim before their pod is made: go on now (the
    operator reconciles them on volume_bound, once this commits)."""
    waiting = [str(i) for i in live_attachments(volume).values_list("instance_id", flat=True)]
    if waiting:
        volume_id = str(volume.pk)
        transaction.on_commit(
            lambda: volume_bound.send(sender=Volume, volume_id=volume_id, instance_ids=waiting)
        )
