import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.instances.states import HOLDS_COMPUTE, State


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"
    TERMINATED = "terminated", "Terminated"


def frozen_terms(instance_type: Any) -> dict[str, Any]:
    """What a launch copies from its instance type onto the instance: resources and price, so that quota
    accounting and billing do not move if staff edit the type later."""
    return {
        "gpu_type_id": instance_type.gpu_type_id,
        "gpu_count": instance_type.gpu_count,
        "vcpu": instance_type.vcpu,
        "memory_gib": instance_type.memory_gib,
        "ephemeral_disk_gib": instance_type.ephemeral_disk_gib,
        "price_per_hour": instance_type.price_per_hour,
    }


class Placement(models.TextChoices):
    BLOCK = "block", "All nodes in one topology block"
    ANY = "any", "Any nodes of the region"


class OnNodeFailure(models.TextChoices):
    REPLACE = "replace", "Replace the node in the same block"
    STOP = "stop", "Stop the cluster"
    FAIL = "fail", "Fail the cluster"


class Cluster(models.Model):
    """N whole nodes of one instance type, admitted, placed and started all at once (docs/clusters.md).
    Its nodes are instances (Instance.cluster, .rank): SSH, logs, events and billing work per node; the
    cluster's `state` is kept from theirs (apps/instances/cluster_states.py)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="clusters")
    name = models.CharField(max_length=40)
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    instance_type = models.ForeignKey("catalog.InstanceType", on_delete=models.PROTECT, related_name="+")
    node_count = models.PositiveSmallIntegerField()
    # Per node, frozen at admission like an instance's (frozen_terms): the cluster costs node_count times it.
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=4)
    placement = models.CharField(max_length=8, choices=Placement.choices, default=Placement.BLOCK)
    # Where admission placed it: the block's value and the node label that carries it (the region's block
    # label, or the zone label in a region without block labels); empty for placement `any`.
    block = models.CharField(max_length=100, blank=True)
    block_label = models.CharField(max_length=253, blank=True)
    # The availability zone its nodes are pinned to: the one asked for, else its block's; empty: any.
    zone = models.CharField(max_length=100, blank=True)
    # Key/value labels the customer sets (apps/core/tags.py validates them); copied into the usage ledger
    # when the resource is metered, so usage and budgets can be grouped by them (docs/billing.md "Tags").
    tags = models.JSONField(default=dict, blank=True)
    on_node_failure = models.CharField(
        max_length=8, choices=OnNodeFailure.choices, default=OnNodeFailure.REPLACE
    )
    image_reference = models.CharField(max_length=255)
    command = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    auto_stop_after = models.PositiveIntegerField(null=True, blank=True)
    max_runtime = models.PositiveIntegerField(null=True, blank=True)

    desired_state = models.CharField(
        max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    state = models.CharField(max_length=16, default="pending")
    failure_reason = models.CharField(max_length=32, blank=True)
    state_message = models.CharField(max_length=500, blank=True)
    # Set when every node first ran: a node lost after it makes the cluster degraded, before it failed.
    ran_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~Q(state="terminated"),
                name="cluster_unique_live_name",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "-created_at", "id"], name="cluster_tenant_order_idx"),
            # Admission subtracts the nodes promised to clusters not placed yet (cluster_services).
            models.Index(
                fields=["region", "instance_type"],
                condition=Q(state__in=["pending", "provisioning", "starting"]),
                name="cluster_unplaced_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class Instance(models.Model):
    """A GPU instance. `desired_state` is what the customer asked for; `state` is what we last observed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="instances")
    name = models.CharField(max_length=63)
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    instance_type = models.ForeignKey("catalog.InstanceType", on_delete=models.PROTECT, related_name="+")
    # Resources and price frozen at launch: quota accounting and billing do not move if staff edit the type.
    gpu_type = models.ForeignKey(
        "catalog.GpuType", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    gpu_count = models.PositiveSmallIntegerField()
    vcpu = models.PositiveSmallIntegerField()
    memory_gib = models.PositiveIntegerField()
    ephemeral_disk_gib = models.PositiveIntegerField()
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=4)
    image_reference = models.CharField(max_length=255)
    # The availability zone its pod is pinned to (a node label, docs/networking.md "Zones"): the one the
    # launch named, else its volume's; empty: any zone of the region.
    zone = models.CharField(max_length=100, blank=True)
    # Key/value labels the customer sets (apps/core/tags.py validates them); copied into the usage ledger
    # when the resource is metered, so usage and budgets can be grouped by them (docs/billing.md "Tags").
    tags = models.JSONField(default=dict, blank=True)
    image = models.ForeignKey(
        "catalog.Image", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ssh_keys = models.ManyToManyField("accounts.SshKey", blank=True, related_name="+")
    env = models.JSONField(default=dict, blank=True)
    command = models.JSONField(default=list, blank=True)
    auto_stop_after = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds of running, then stop."
    )
    max_runtime = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds of running in total, then stop."
    )

    desired_state = models.CharField(
        max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    state = models.CharField(
        max_length=16, choices=[(s.value, s.value) for s in State], default=State.PENDING
    )
    # Counted by quota usage and capacity; maintained with `state` (states.holds_compute_after).
    holds_compute = models.BooleanField(default=True)
    failure_reason = models.CharField(max_length=32, blank=True)
    state_message = models.CharField(max_length=500, blank=True)
    # Bumped on every change the operator must act on, so it can tell stale work from new.
    generation = models.PositiveIntegerField(default=1)
    connection = models.JSONField(default=dict, blank=True, help_text="Host, port and user once running.")
    # A node of a cluster (its rank from 0), or None for a single instance.
    cluster = models.ForeignKey(
        Cluster, on_delete=models.PROTECT, null=True, blank=True, related_name="nodes"
    )
    rank = models.PositiveSmallIntegerField(null=True, blank=True)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # When `state` last changed: the not-ready timeout and the stuck-instance gauge measure from here.
    state_changed_at = models.DateTimeField(default=timezone.now)
    running_since = models.DateTimeField(null=True, blank=True)
    accrued_running_seconds = models.PositiveBigIntegerField(default=0)
    # The billing clock: set while the instance's pod holds its GPUs on a node (its container started, Ready
    # or not), cleared when it stops holding them (stop, terminate, restart, failure). The ledger is metered
    # from the `billable` flags of InstanceEvent, which record the same moments (apps/billing/metering.py).
    billing_since = models.DateTimeField(null=True, blank=True)
    accrued_billed_seconds = models.PositiveBigIntegerField(default=0)
    stopped_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~Q(state=State.TERMINATED),
                name="instance_unique_live_name",
            ),
            models.UniqueConstraint(fields=["cluster", "rank"], name="instance_unique_cluster_rank"),
        ]
        indexes = [
            models.Index(fields=["tenant", "state"]),
            # The list's keyset order (apps/core/pagination.py): every instance, and the live ones the list
            # shows by default, so a tenant's terminated history is not scanned past.
            models.Index(fields=["tenant", "-created_at", "id"], name="instance_tenant_order_idx"),
            models.Index(
                fields=["tenant", "-created_at", "id"],
                condition=~Q(state=State.TERMINATED),
                name="instance_tenant_live_order_idx",
            ),
            models.Index(
                fields=["state"], condition=~Q(state=State.TERMINATED), name="instance_live_state_idx"
            ),
            # Admission counts a tenant's live rows (selectors.QUOTA_ROWS) and capacity the rows holding
            # compute in a pool: partial, so neither grows with terminated history (docs/instances.md).
            models.Index(
                fields=["tenant"],
                condition=~Q(state=State.TERMINATED) | Q(holds_compute=True),
                include=["gpu_type", "region", "state", "holds_compute", "gpu_count", "vcpu", "memory_gib"],
                name="instance_quota_rows_idx",
            ),
            models.Index(
                fields=["region", "gpu_type"],
                condition=Q(holds_compute=True),
                include=["gpu_count", "vcpu", "memory_gib"],
                name="instance_pool_holdings_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            self.holds_compute = self.state in HOLDS_COMPUTE
        super().save(*args, **kwargs)

    def running_seconds(self, now: Any = None) -> int:
        total = self.accrued_running_seconds
        if self.running_since is not None:
            total += max(0, int(((now or timezone.now()) - self.running_since).total_seconds()))
        return total

    def billed_seconds(self, now: Any = None) -> int:
        """Counted like the ledger counts them: between instants floored to the whole second."""
        total = self.accrued_billed_seconds
        if self.billing_since is not None:
            end, start = (
                (now or timezone.now()).replace(microsecond=0),
                self.billing_since.replace(microsecond=0),
            )
            total += max(0, int((end - start).total_seconds()))
        return total

    def cost_so_far(self, now: Any = None) -> Decimal:
        cost = self.price_per_hour * Decimal(self.billed_seconds(now)) / Decimal(3600)
        return cost.quantize(Decimal("0.0001"))


class InstanceEvent(models.Model):
    """The append-only timeline of one instance: what was asked, by whom, and what was observed."""

    id = models.BigAutoField(primary_key=True)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16)  # action, observation, system
    name = models.CharField(max_length=32)  # launch, stop, pod_ready, auto_stop ...
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=32, blank=True)
    message = models.CharField(max_length=500, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # Whether the instance was billed after this event (its pod held GPUs): the ledger's intervals are where
    # this flips, read in the order the events were written (id), at their created_at.
    billable = models.BooleanField(
        default=False, help_text="Whether the instance was billed after this event (its pod held GPUs)."
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # Metering reads the line in force where the ledger ends, and the lines after it
            # (apps/billing/metering.py): by instance and time, not the whole timeline.
            models.Index(fields=["instance", "created_at"], name="instance_event_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.instance_id}:{self.name}:{self.from_state}->{self.to_state}"
