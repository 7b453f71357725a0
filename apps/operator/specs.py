"""Frozen specs: everything the manifest builders need, read once from the database models.

The builders in manifests.py take only these specs, so they stay pure and their output is a function of
the spec alone. `spec_from_instance` and `namespace_spec_for` read model attributes and related objects;
they run no queries of their own beyond those, so callers should load what they touch up front:

    Instance.objects.select_related("tenant", "region", "gpu_type").prefetch_related(
        "ssh_keys", "volume_attachments"
    )
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from apps.operator import host_keys, names
from apps.operator.cluster_nodes import ClusterNodeSpec

if TYPE_CHECKING:
    from apps.catalog.models import GpuType, Region
    from apps.instances.models import Instance
    from apps.quotas.models import GpuQuota, TenantQuota
    from apps.storage.models import Volume
    from apps.tenants.models import Tenant

WHOLE_GPU_RESOURCE = "nvidia.com/gpu"
SERVICE_TYPES = ("NodePort", "LoadBalancer", "ClusterIP")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
DEFAULT_SSH_PORT = 2222
# The platform's instance tools (its static SSH server, images/sshd/): the image an init container copies
# the server from. The sandbox's registry serves this name; production sets INSTANCE_TOOLS_IMAGE to a
# pinned reference of its own registry (docs/operator-objects.md, "The instance pod").
DEFAULT_TOOLS_IMAGE = "gpucloud/instance-tools:sandbox"
# Blocked when a region configures none: private and shared address space, where cluster pods, services
# and nodes live. Link-local (cloud metadata at 169.254.169.254) is blocked always.
DEFAULT_BLOCKED_EGRESS_CIDRS = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16")
ALWAYS_BLOCKED_EGRESS_CIDRS = ("169.254.0.0/16",)


def normalize_cidrs(cidrs: Iterable[str]) -> tuple[str, ...]:
    """IPv4 networks, validated, merged where they overlap and sorted; IPv6 entries are dropped (the
    egress policy opens only IPv4, so IPv6 stays denied by default). Raises ValueError on a bad CIDR."""
    nets = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    return tuple(str(n) for n in ipaddress.collapse_addresses(v4))


def _check_name(what: str, value: str, *, dns1035: bool = False) -> None:
    ok = names.is_dns1035_label(value) if dns1035 else names.is_dns1123_label(value)
    if not ok:
        raise ValueError(f"{what} {value!r} is not a valid DNS label")


SUBJECT_KINDS = ("User", "ServiceAccount")


@dataclass(frozen=True, kw_only=True, slots=True)
class LogsReader:
    """Who may read pod logs in a tenant namespace: a RoleBinding of `cluster_role` (whose only right is
    `get pods/log`) to `subjects`, each (kind, name, namespace; "" for a User)."""

    cluster_role: str
    subjects: tuple[tuple[str, str, str], ...]

    def __post_init__(self) -> None:
        if not self.cluster_role or not self.subjects:
            raise ValueError("a logs reader needs a cluster role and at least one subject")
        for kind, name, namespace in self.subjects:
            if kind not in SUBJECT_KINDS or not name or (kind == "ServiceAccount") != bool(namespace):
                raise ValueError(f"bad logs reader subject {(kind, name, namespace)!r}")


def logs_reader_from(cluster_role: str, subjects: Iterable[str]) -> LogsReader | None:
    """From the settings' form (LOGS_READER_CLUSTER_ROLE, LOGS_READER_SUBJECTS: `User:<name>` or
    `ServiceAccount:<namespace>:<name>`); None without a role. ValueError on a malformed subject."""
    if not cluster_role:
        return None
    parsed = []
    for text in subjects:
        kind, _, rest = text.strip().partition(":")
        namespace, name = rest.split(":", 1) if kind == "ServiceAccount" and ":" in rest else ("", rest)
        parsed.append((kind, name, namespace))
    return LogsReader(cluster_role=cluster_role, subjects=tuple(parsed))


@dataclass(frozen=True, kw_only=True, slots=True)
class TenantNamespaceSpec:
    """One tenant's namespace in one region's cluster, with the limits of its ResourceQuota."""

    tenant_id: str
    tenant_slug: str
    namespace: str
    # (resource name, max) pairs, e.g. (("nvidia.com/gpu", 8), ("nvidia.com/mig-1g.10gb", 7)); sorted.
    gpus: tuple[tuple[str, int], ...]
    cpu: int  # cores
    memory_gib: int
    max_pods: int
    max_pvcs: int
    storage_gib: int
    # What instances may not reach (the cluster's pod and service ranges, ...). make_network_policies
    # adds ALWAYS_BLOCKED_EGRESS_CIDRS and normalizes.
    blocked_egress_cidrs: tuple[str, ...] = ()
    # Whether instances may connect out to TCP port 25 (the region's allow_smtp_egress).
    allow_smtp_egress: bool = False
    ssh_port: int = DEFAULT_SSH_PORT
    # Who may read the namespace's pod logs (the console's logs credential); None: nobody.
    logs_reader: LogsReader | None = None

    def __post_init__(self) -> None:
        _check_name("namespace", self.namespace)
        resources = [r for r, _ in self.gpus]
        if len(set(resources)) != len(resources):
            raise ValueError("gpus names a resource twice")
        if any(n < 0 for _, n in self.gpus) or min(self.cpu, self.memory_gib, self.max_pods) < 0:
            raise ValueError("limits must not be negative")
        if not 1 <= self.ssh_port <= 65535:
            raise ValueError("ssh_port out of range")
        normalize_cidrs(self.blocked_egress_cidrs)  # raises on a malformed entry
        object.__setattr__(self, "gpus", tuple(sorted(self.gpus)))

    @property
    def gpu_limits(self) -> dict[str, int]:
        return dict(self.gpus)


@dataclass(frozen=True, kw_only=True, slots=True)
class VolumeMountSpec:
    """A volume's claim mounted into an instance's container."""

    claim_name: str
    mount_path: str

    def __post_init__(self) -> None:
        _check_name("claim_name", self.claim_name, dns1035=True)
        if not self.mount_path.startswith("/") or self.mount_path == "/":
            raise ValueError("mount_path must be an absolute path below /")


@dataclass(frozen=True, kw_only=True, slots=True)
class VolumeClaimSpec:
    """One volume's PersistentVolumeClaim in its tenant's namespace."""

    volume_id: str
    tenant_id: str
    namespace: str
    name: str
    size_gib: int
    access_mode: str
    storage_class: str | None  # None: the cluster's default class

    def __post_init__(self) -> None:
        _check_name("namespace", self.namespace)
        _check_name("name", self.name, dns1035=True)
        if self.size_gib < 1:
            raise ValueError("size_gib must be at least 1")
        if self.access_mode not in ACCESS_MODES:
            raise ValueError(f"access_mode must be one of {', '.join(ACCESS_MODES)}")


@dataclass(frozen=True, kw_only=True, slots=True)
class InstancePodSpec:
    """One instance's pod, Service and SSH Secret."""

    instance_id: str
    tenant_id: str
    namespace: str
    name: str
    generation: int
    image: str
    gpu_resource: str | None  # "nvidia.com/gpu" or a MIG resource such as "nvidia.com/mig-1g.10gb"
    gpu_count: int
    gpu_product_label: str | None  # value of the nvidia.com/gpu.product node label
    vcpu: int
    memory_gib: int
    ephemeral_disk_gib: int
    env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()  # the container's command (replaces the image's entrypoint)
    args: tuple[str, ...] = ()
    runtime_class_name: str | None = None
    zone: str = ""  # the availability zone it is pinned to (a node label value); "" any
    service_type: str = "NodePort"
    ssh_port: int = DEFAULT_SSH_PORT
    authorized_keys: tuple[str, ...] = ()
    volumes: tuple[VolumeMountSpec, ...] = ()  # sorted by mount path
    tools_image: str = DEFAULT_TOOLS_IMAGE
    # The instance's SSH host key (PKCS#8 PEM; apps/operator/host_keys.py), kept in its
    # Secret. Not in repr: a spec may be logged.
    host_key: str = field(default="", repr=False)
    # A cluster node's private key for reaching the other nodes (cluster_nodes.py), kept in its Secret.
    cluster_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        _check_name("namespace", self.namespace)
        _check_name("name", self.name, dns1035=True)
        if not self.tools_image:
            raise ValueError("tools_image is required")
        paths = [v.mount_path for v in self.volumes]
        claims = [v.claim_name for v in self.volumes]
        if len(set(paths)) != len(paths) or len(set(claims)) != len(claims):
            raise ValueError("volumes name a mount path or a claim twice")
        if (self.gpu_count > 0) != bool(self.gpu_resource):
            raise ValueError("gpu_resource must be set exactly when gpu_count > 0")
        if self.gpu_count < 0 or self.vcpu < 1 or self.memory_gib < 1 or self.ephemeral_disk_gib < 0:
            raise ValueError("resources out of range")
        if self.service_type not in SERVICE_TYPES:
            raise ValueError(f"service_type must be one of {', '.join(SERVICE_TYPES)}")
        if not 1 <= self.ssh_port <= 65535:
            raise ValueError("ssh_port out of range")
        env_names = [n for n, _ in self.env]
        if len(set(env_names)) != len(env_names):
            raise ValueError("env names a variable twice")
        if not self.image:
            raise ValueError("image is required")

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


def claim_spec_for(volume: Volume) -> VolumeClaimSpec:
    """The claim of a volume. Reads volume.tenant: select_related it."""
    return VolumeClaimSpec(
        volume_id=str(volume.pk),
        tenant_id=str(volume.tenant_id),
        namespace=names.namespace_name(volume.tenant_id, volume.tenant.slug),
        name=names.volume_claim_name(volume.pk),
        size_gib=volume.size_gib,
        access_mode=volume.access_mode,
        storage_class=volume.storage_class or None,
    )


def spec_from_instance(
    instance: Instance, *, ssh_port: int = DEFAULT_SSH_PORT, tools_image: str | None = None
) -> InstancePodSpec:
    """The pod spec of an instance as it is now. Reads instance.tenant, .region, .gpu_type,
    .ssh_keys.all() and .volume_attachments.all(): select_related / prefetch_related them (see the module
    docstring)."""
    gpu_type = instance.gpu_type if instance.gpu_count else None
    region = instance.region
    keys = {" ".join(key.public_key.split()) for key in instance.ssh_keys.all()}
    cluster_key = ""
    if instance.cluster_id is not None:
        # The cluster's own key pair: its nodes SSH to one another with it (mpirun, DeepSpeed).
        cluster_key, cluster_public = host_keys.cluster_key_pair(
            instance.cluster_id, secret=settings.SECRET_KEY or ""
        )
        keys.add(cluster_public)
    env = instance.env or {}
    return InstancePodSpec(
        instance_id=str(instance.pk),
        tenant_id=str(instance.tenant_id),
        namespace=names.namespace_name(instance.tenant_id, instance.tenant.slug),
        name=names.instance_object_name(instance.pk),
        generation=instance.generation,
        image=instance.image_reference,
        gpu_resource=gpu_type.resource_name if gpu_type is not None else None,
        gpu_count=instance.gpu_count,
        gpu_product_label=(gpu_type.product_label or None) if gpu_type is not None else None,
        vcpu=instance.vcpu,
        memory_gib=instance.memory_gib,
        ephemeral_disk_gib=instance.ephemeral_disk_gib,
        env=tuple(sorted((str(k), str(v)) for k, v in env.items())),
        command=tuple(str(c) for c in instance.command or ()),
        runtime_class_name=region.runtime_class_name or None,
        zone=instance.zone,
        service_type=region.access_service_type,
        ssh_port=ssh_port,
        tools_image=tools_image or settings.INSTANCE_TOOLS_IMAGE or DEFAULT_TOOLS_IMAGE,
        host_key=host_keys.host_private_key(instance.pk, secret=settings.SECRET_KEY or ""),
        authorized_keys=tuple(sorted(keys)),
        cluster_key=cluster_key,
        volumes=tuple(
            sorted(
                (
                    VolumeMountSpec(claim_name=names.volume_claim_name(a.volume_id), mount_path=a.mount_path)
                    for a in instance.volume_attachments.all()
                ),
                key=lambda v: v.mount_path,
            )
        ),
    )


def namespace_spec_for(
    tenant: Tenant,
    region: Region,
    quota: TenantQuota,
    *,
    gpu_types: Iterable[GpuType] = (),
    gpu_quotas: Iterable[GpuQuota] = (),
    ssh_port: int = DEFAULT_SSH_PORT,
    logs_reader: LogsReader | None = None,
) -> TenantNamespaceSpec:
    """The namespace spec of `tenant` in `region`, its ResourceQuota mirroring `quota`.

    Extended resources a ResourceQuota does not name are unlimited, so pass every catalog GPU type
    (`GpuType.objects.all()`): each resource they use is capped, nvidia.com/gpu always. Each resource gets
    the tenant's max_gpus, or less when per-type limits (`tenant.gpu_quotas.all()`, global or for this
    region) cover every GPU type that uses it. Storage mirrors max_volume_gib; pods max_instances;
    PVCs max_volume_gib too (a claim is at least 1 GiB, so the storage limit bounds their number).
    Blocked egress is the region's list, or DEFAULT_BLOCKED_EGRESS_CIDRS when it has none
    (make_network_policies adds link-local itself); SMTP egress is open only if the region allows it."""
    types_by_resource: dict[str, list[Any]] = {WHOLE_GPU_RESOURCE: []}
    for gpu_type in gpu_types:
        types_by_resource.setdefault(gpu_type.resource_name, []).append(gpu_type.pk)
    per_type: dict[Any, int] = {}
    for limit in gpu_quotas:
        if limit.tenant_id != tenant.pk or limit.region_id not in (None, region.pk):
            continue
        current = per_type.get(limit.gpu_type_id)
        per_type[limit.gpu_type_id] = limit.max_gpus if current is None else min(current, limit.max_gpus)
    gpus: list[tuple[str, int]] = []
    for resource, type_ids in types_by_resource.items():
        limit_value = quota.max_gpus
        if type_ids and all(t in per_type for t in type_ids):
            limit_value = min(limit_value, sum(per_type[t] for t in type_ids))
        gpus.append((resource, limit_value))
    return TenantNamespaceSpec(
        tenant_id=str(tenant.pk),
        tenant_slug=tenant.slug,
        namespace=names.namespace_name(tenant.pk, tenant.slug),
        gpus=tuple(gpus),
        cpu=quota.max_vcpu,
        memory_gib=quota.max_memory_gib,
        max_pods=quota.max_instances,
        max_pvcs=quota.max_volume_gib,
        storage_gib=quota.max_volume_gib,
        blocked_egress_cidrs=normalize_cidrs(region.blocked_egress_cidrs or DEFAULT_BLOCKED_EGRESS_CIDRS),
        allow_smtp_egress=region.allow_smtp_egress,
        ssh_port=ssh_port,
        logs_reader=logs_reader,
    )


def cluster_node_spec_for(instance: Instance, *, ssh_port: int = DEFAULT_SSH_PORT) -> ClusterNodeSpec:
    """What a cluster's node pod carries beyond an instance's. Reads instance.cluster, .tenant, .region."""
    cluster = instance.cluster
    assert cluster is not None and instance.rank is not None
    region = instance.region
    return ClusterNodeSpec(
        cluster_id=str(cluster.pk),
        tenant_id=str(instance.tenant_id),
        namespace=names.namespace_name(instance.tenant_id, instance.tenant.slug),
        rank=instance.rank,
        hostnames=tuple(f"{cluster.name}-{rank}" for rank in range(cluster.node_count)),
        gpus_per_node=instance.gpu_count,
        block_label=cluster.block_label if cluster.block else "",
        block=cluster.block if cluster.block_label else "",
        fabric_env=tuple(sorted((str(k), str(v)) for k, v in (region.fabric_env or {}).items())),
        rdma_resources=tuple(sorted((str(k), int(v)) for k, v in (region.rdma_resources or {}).items())),
        ssh_port=ssh_port,
    )
