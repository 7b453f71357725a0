"""What can be rented where: regions (one Kubernetes cluster each), GPU types, instance types, images."""

import re
from decimal import Decimal
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from apps.catalog.registries import registry_refusal
from apps.core import crypto


class RegionStatus(models.TextChoices):
    AVAILABLE = "available", "Available"
    DEGRADED = "degraded", "Degraded"
    MAINTENANCE = "maintenance", "Maintenance"


class AccessServiceType(models.TextChoices):
    NODE_PORT = "NodePort", "NodePort"
    LOAD_BALANCER = "LoadBalancer", "LoadBalancer"
    CLUSTER_IP = "ClusterIP", "ClusterIP (behind a gateway)"


class StorageAccessMode(models.TextChoices):
    READ_WRITE_ONCE = "ReadWriteOnce", "ReadWriteOnce (one instance at a time)"
    READ_WRITE_MANY = "ReadWriteMany", "ReadWriteMany (several instances at once)"


# Topograph's default labels (NVIDIA's topology discovery for Kubernetes): the spine a node's leaf switch
# hangs from, and the leaf switch itself.
TOPOLOGY_BLOCK_LABEL = "network.topology.nvidia.com/spine"
TOPOLOGY_RACK_LABEL = "network.topology.nvidia.com/leaf"
# A Kubernetes label key: an optional DNS subdomain prefix and "/", then a name of at most 63 characters.
label_key = RegexValidator(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    "A Kubernetes label key, such as network.topology.nvidia.com/spine.",
)

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def env_names(value: Any) -> None:
    """A JSON object of environment variables: upper-case names, string values."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError('An object of NAME: "value" pairs, names in capitals (e.g. NCCL_IB_HCA).')


def resource_counts(value: Any) -> None:
    """A JSON object of extended resources and how many of each: domain-prefixed names, whole numbers."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str)
        and len(k) <= 253
        and _RESOURCE_NAME.match(k)
        and isinstance(v, int)
        and not isinstance(v, bool)
        and 0 < v <= 1024
        for k, v in value.items()
    ):
        raise ValidationError('An object of resource: count, e.g. {"rdma/rdma_shared_device_a": 1}.')


class Region(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=RegionStatus.choices, default=RegionStatus.AVAILABLE)
    # How the operator reaches the cluster: in-cluster service account, or a kubeconfig encrypted at rest
    # under FIELD_ENCRYPTION_KEYS (which only the operator and the worker hold).
    in_cluster = models.BooleanField(default=False)
    kubeconfig_encrypted = models.TextField(blank=True, editable=False)
    kubeconfig_context = models.CharField(max_length=200, blank=True)
    sandbox = models.BooleanField(
        default=False,
        help_text="A local test cluster (the sandbox): its kubeconfig's server may be plain http or skip TLS "
        "verification. Never for a cluster that runs customers' instances.",
    )
    # How the console reads pod logs: a second kubeconfig whose identity may only `get pods/log` in tenant
    # namespaces, encrypted under LOGS_ENCRYPTION_KEYS (which only web holds). Its current context is used.
    logs_kubeconfig_encrypted = models.TextField(blank=True, editable=False)
    storage_class = models.CharField(max_length=100, blank=True)
    # What the storage class can do (apps/storage): whether a volume may be mounted by several instances at
    # once, and whether it can grow.
    storage_access_mode = models.CharField(
        max_length=16, choices=StorageAccessMode.choices, default=StorageAccessMode.READ_WRITE_ONCE
    )
    storage_expandable = models.BooleanField(
        default=True, help_text="The storage class allows volume expansion (allowVolumeExpansion)."
    )
    access_service_type = models.CharField(
        max_length=16, choices=AccessServiceType.choices, default=AccessServiceType.NODE_PORT
    )
    ssh_host = models.CharField(
        max_length=253,
        blank=True,
        help_text="Public address customers SSH to (NodePort services); empty: the node's address.",
    )
    runtime_class_name = models.CharField(
        max_length=63, blank=True, help_text="e.g. gvisor or kata; optional."
    )
    # CIDRs instances must not reach (the cluster's pod and service ranges); used by the operator.
    blocked_egress_cidrs = ArrayField(models.CharField(max_length=43), default=list, blank=True)
    # Outbound SMTP (TCP 25) from instances is blocked unless this is set: direct-to-MX mail from rented
    # machines is how spam leaves a cloud. Submission ports (465, 587) stay open.
    allow_smtp_egress = models.BooleanField(
        default=False, help_text="Let instances connect out to TCP port 25 (SMTP)."
    )
    # The node labels that say where a node sits in the fabric (docs/catalog.md "Topology"): a block is the
    # nodes a cluster may span at full bandwidth (under one spine), a rack those under one leaf switch.
    # Topograph's names by default; a region whose nodes are labelled otherwise names its own.
    topology_block_label = models.CharField(
        max_length=253,
        default=TOPOLOGY_BLOCK_LABEL,
        blank=True,
        validators=[label_key],
        help_text="Node label naming a node's block (all nodes under one spine); empty: one block per zone.",
    )
    topology_rack_label = models.CharField(
        max_length=253,
        default=TOPOLOGY_RACK_LABEL,
        blank=True,
        validators=[label_key],
        help_text="Node label naming a node's rack (leaf switch); optional.",
    )
    # Multi-node clusters here (docs/clusters.md, "Region settings"): how many nodes one may have, the
    # environment the fabric needs on every node (NCCL's interfaces and HCAs), and the extended resources
    # each node requests for its network devices (an RDMA device plugin's).
    max_cluster_nodes = models.PositiveIntegerField(default=64, validators=[MinValueValidator(1)])
    fabric_env = models.JSONField(
        default=dict,
        blank=True,
        validators=[env_names],
        help_text='Set on every cluster node, e.g. {"NCCL_SOCKET_IFNAME": "ib0", "NCCL_IB_HCA": "mlx5"}.',
    )
    rdma_resources = models.JSONField(
        default=dict,
        blank=True,
        validators=[resource_counts],
        help_text='Requested by every cluster node, e.g. {"rdma/rdma_shared_device_a": 1}.',
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def accepts_launches(self) -> bool:
        return self.status != RegionStatus.MAINTENANCE

    @property
    def has_kubeconfig(self) -> bool:
        return bool(self.kubeconfig_encrypted)

    def set_kubeconfig(self, kubeconfig: str) -> None:
        """Raises crypto.KeysUnavailable in a process without FIELD_ENCRYPTION_KEYS (web)."""
        self.kubeconfig_encrypted = crypto.encrypt(kubeconfig, keys=crypto.FIELD) if kubeconfig else ""

    def get_kubeconfig(self) -> str:
        if not self.kubeconfig_encrypted:
            return ""
        return crypto.decrypt(self.kubeconfig_encrypted, keys=crypto.FIELD)

    @property
    def has_logs_kubeconfig(self) -> bool:
        return bool(self.logs_kubeconfig_encrypted)

    def set_logs_kubeconfig(self, kubeconfig: str) -> None:
        """Raises crypto.KeysUnavailable in a process without LOGS_ENCRYPTION_KEYS."""
        self.logs_kubeconfig_encrypted = crypto.encrypt(kubeconfig, keys=crypto.LOGS) if kubeconfig else ""

    def get_logs_kubeconfig(self) -> str:
        if not self.logs_kubeconfig_encrypted:
            return ""
        return crypto.decrypt(self.logs_kubeconfig_encrypted, keys=crypto.LOGS)


class GpuType(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    vendor = models.CharField(max_length=40, default="NVIDIA")
    model = models.CharField(max_length=100)
    memory_gib = models.PositiveIntegerField()
    product_label = models.CharField(
        max_length=100, help_text="Value of the nvidia.com/gpu.product node label."
    )
    resource_name = models.CharField(
        max_length=100,
        default="nvidia.com/gpu",
        help_text="nvidia.com/gpu, or a MIG resource for fractional GPUs.",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_fractional(self) -> bool:
        return self.resource_name != "nvidia.com/gpu"


class InstanceType(models.Model):
    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    gpu_count = models.PositiveSmallIntegerField(default=0)
    vcpu = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    memory_gib = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    ephemeral_disk_gib = models.PositiveIntegerField(default=50)
    # Per hour for display; billing rates per second from the same Decimal.
    price_per_hour = models.DecimalField(
        max_digits=12, decimal_places=4, validators=[MinValueValidator(Decimal(0))]
    )
    active = models.BooleanField(default=True)
    # A type that takes all of a node's GPUs: the only kind a multi-node cluster is made of.
    whole_node = models.BooleanField(
        default=False, help_text="Takes a whole node's GPUs: may be the node type of a multi-node cluster."
    )

    class Meta:
        ordering = ["gpu_count", "slug"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(gpu_type__isnull=True, gpu_count=0)
                    | models.Q(gpu_type__isnull=False, gpu_count__gt=0)
                ),
                name="instance_type_gpu_consistent",
            )
        ]

    def __str__(self) -> str:
        return self.slug


class RegionCapacity(models.Model):
    """How much of one pool a region has: GPUs of a type, or the CPU-only pool (gpu_type empty).

    Declared by staff until the operator reports what nodes actually have allocatable.
    """

    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="capacities")
    gpu_type = models.ForeignKey(GpuType, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    gpus = models.PositiveIntegerField(default=0)
    vcpu = models.PositiveIntegerField(default=0)
    memory_gib = models.PositiveIntegerField(default=0)
    observed_at = models.DateTimeField(null=True, blank=True, help_text="Set when the operator reported it.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["region", "gpu_type"], name="capacity_unique_pool"),
            models.UniqueConstraint(
                fields=["region"], condition=models.Q(gpu_type__isnull=True), name="capacity_unique_cpu_pool"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.region_id}:{self.gpu_type_id or 'cpu'}"


class NodeState(models.TextChoices):
    READY = "ready", "Ready"
    NOT_READY = "not_ready", "Not ready"
    CORDONED = "cordoned", "Cordoned"
    UNKNOWN = "unknown", "Unknown"


class RegionNode(models.Model):
    """One node of a region's cluster as the operator's capacity pass last saw it (staff's capacity
    overview). Written only by the operator: nodes it no longer sees are deleted."""

    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=253)
    # Empty when the node's GPU product is not in the catalog (gpu_product says which it is).
    gpu_type = models.ForeignKey(GpuType, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    gpu_product = models.CharField(max_length=100, blank=True)
    gpu_resource = models.CharField(max_length=100, blank=True, help_text="Empty for CPU-only nodes.")
    gpus_allocatable = models.PositiveIntegerField(default=0)
    # Requests of every scheduled, unfinished pod on the node, and the part of them our instances hold.
    gpus_requested = models.PositiveIntegerField(default=0)
    gpus_requested_by_instances = models.PositiveIntegerField(default=0)
    vcpu_allocatable = models.DecimalField(max_digits=10, decimal_places=3, default=Decimal(0))
    vcpu_requested = models.DecimalField(max_digits=10, decimal_places=3, default=Decimal(0))
    memory_allocatable_bytes = models.BigIntegerField(default=0)
    memory_requested_bytes = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.UNKNOWN)
    reason = models.CharField(max_length=300, blank=True)
    instance_type = models.CharField(max_length=100, blank=True)
    zone = models.CharField(max_length=100, blank=True)
    # From the region's topology labels; a node without a block label is in its zone's block (see
    # selectors.whole_nodes_free).
    block = models.CharField(max_length=100, blank=True)
    rack = models.CharField(max_length=100, blank=True)
    observed_at = models.DateTimeField()

    class Meta:
        ordering = ["region", "name"]
        constraints = [models.UniqueConstraint(fields=["region", "name"], name="region_node_unique_name")]

    def __str__(self) -> str:
        return f"{self.region_id}:{self.name}"


class Image(models.Model):
    """A curated image offered in some regions."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    reference = models.CharField(
        max_length=255, help_text="Full reference, e.g. nvcr.io/nvidia/pytorch:24.08-py3"
    )
    description = models.CharField(max_length=300, blank=True)
    # The instance pod runs the platform's SSH server first and this under it; the operator never reads an
    # image's configuration from its registry, so staff record here what the image itself would run.
    command = models.JSONField(
        default=list,
        blank=True,
        help_text="What the image runs when a launch names no command: its ENTRYPOINT and CMD as one list of "
        'strings, e.g. ["start-notebook.py"]. Empty: the instance runs the SSH server alone.',
    )
    regions = models.ManyToManyField(Region, related_name="images", blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class ImagePolicy(models.Model):
    """Staff policy for images that tenants bring themselves. A single row (pk=1)."""

    allow_custom_images = models.BooleanField(default=False)
    allowed_registries = ArrayField(
        models.CharField(max_length=253),
        default=list,
        blank=True,
        help_text="Registry hosts custom images may come from; empty means none (custom images are then "
        "refused). IP addresses and localhost are never allowed.",
    )

    class Meta:
        verbose_name_plural = "image policy"

    def __str__(self) -> str:
        return "image policy"

    def clean(self) -> None:
        refused = [
            f"{host}: {problem}"
            for host in self.allowed_registries
            if (problem := registry_refusal(host)) is not None
        ]
        if refused:
            raise ValidationError({"allowed_registries": refused})

    @classmethod
    def current(cls) -> "ImagePolicy":
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy
