"""Persistent volumes: one PersistentVolumeClaim each in the tenant's namespace of the volume's region.

Object storage lives in apps/storage/objects (its own app); this module is volumes only.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.catalog.models import StorageAccessMode


class VolumeState(models.TextChoices):
    CREATING = "creating", "Creating"  # the claim is asked for and not bound yet
    AVAILABLE = "available", "Available"  # bound, attached to no live instance
    IN_USE = "in_use", "In use"  # attached to an instance that is not terminated
    RESIZING = "resizing", "Resizing"  # a larger size is asked for and not yet granted
    DELETING = "deleting", "Deleting"  # billing has ended; the claim is being removed
    DELETED = "deleted", "Deleted"
    FAILED = "failed", "Failed"  # the claim was lost


# States in which the claim exists or is about to, and the volume counts against quota.
HOLDS_STORAGE = frozenset(s for s in VolumeState if s != VolumeState.DELETED)
ATTACHABLE = frozenset(
    {VolumeState.CREATING, VolumeState.AVAILABLE, VolumeState.IN_USE, VolumeState.RESIZING}
)


class Volume(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="volumes")
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=63)
    size_gib = models.PositiveIntegerField()
    # Copied from the region when the volume is made: a claim's class and access mode never change.
    storage_class = models.CharField(max_length=100, blank=True)
    access_mode = models.CharField(max_length=16, choices=StorageAccessMode.choices)
    # A volume lives in one availability zone (docs/networking.md "Zones"): the one it was created in, or
    # that of the first instance it was attached to; empty until then. Instances using it run there.
    zone = models.CharField(max_length=100, blank=True)
    # Frozen at creation like an instance's price: the bill does not move if the setting does.
    price_per_gib_hour = models.DecimalField(max_digits=12, decimal_places=4)
    state = models.CharField(max_length=16, choices=VolumeState.choices, default=VolumeState.CREATING)
    # Key/value labels the customer sets (apps/core/tags.py validates them); copied into the usage ledger
    # when the resource is metered, so usage and budgets can be grouped by them (docs/billing.md "Tags").
    tags = models.JSONField(default=dict, blank=True)
    state_message = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "region", "name"],
                condition=~Q(state=VolumeState.DELETED),
                name="volume_unique_live_name",
            ),
            models.CheckConstraint(condition=Q(size_gib__gte=1), name="volume_size_positive"),
        ]
        indexes = [
            models.Index(fields=["tenant", "state"]),
            models.Index(
                fields=["region", "state"], condition=~Q(state=VolumeState.DELETED), name="volume_live_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def multi_attach(self) -> bool:
        return self.access_mode == StorageAccessMode.READ_WRITE_MANY

    @property
    def price_per_hour(self) -> Decimal:
        return self.price_per_gib_hour * self.size_gib


class VolumeEvent(models.Model):
    """The append-only timeline of a volume. Metering reads its sizes from here: `created` and `resized`
    rows carry the size from then on, `delete_requested` ends the bill."""

    id = models.BigAutoField(primary_key=True)
    volume = models.ForeignKey(Volume, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    name = models.CharField(max_length=32)  # created, resized, delete_requested, bound, deleted, ...
    size_gib = models.PositiveIntegerField()
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16, blank=True)
    message = models.CharField(max_length=500, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.volume_id}:{self.name}:{self.size_gib}"


# The state of an instance that holds its volumes no more (apps.instances.states.State.TERMINATED). Storage
# sits below instances in the layer order, so it names the one state it reads through the attachment's
# foreign key rather than importing instances (tests/storage/test_attachments.py pins that the two agree).
INSTANCE_TERMINATED = "terminated"


class LiveAttachments(models.QuerySet["VolumeAttachment"]):
    def live(self) -> LiveAttachments:
        """Attachments to instances that are not terminated: what holds a volume."""
        return self.exclude(instance__state=INSTANCE_TERMINATED)


class VolumeAttachment(models.Model):
    """A volume mounted into an instance, from launch for the instance's whole life. It stops counting
    (the volume is free again) once the instance is terminated."""

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(
        "instances.Instance", on_delete=models.CASCADE, related_name="volume_attachments"
    )
    volume = models.ForeignKey(Volume, on_delete=models.PROTECT, related_name="attachments")
    mount_path = models.CharField(max_length=255)
    # Asked for with terminate(delete_volumes=true): the volume is deleted once the instance is gone.
    delete_with_instance = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = LiveAttachments.as_manager()

    class Meta:
        ordering = ["mount_path"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "mount_path"], name="attachment_unique_mount_path"),
            models.UniqueConstraint(fields=["instance", "volume"], name="attachment_unique_volume"),
        ]

    def __str__(self) -> str:
        return f"{self.volume_id}@{self.instance_id}:{self.mount_path}"
