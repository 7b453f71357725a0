"""Reads of the catalog, including live availability per region and instance type."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.catalog import holdings
from apps.catalog.models import (
    GpuType,
    Image,
    InstanceType,
    NodeState,
    Region,
    RegionCapacity,
    RegionNode,
    RegionStatus,
)
from apps.core.validation import invalid


def regions() -> QuerySet[Region]:
    return Region.objects.all()


def gpu_types() -> QuerySet[GpuType]:
    return GpuType.objects.all()


def active_instance_types() -> QuerySet[InstanceType]:
    return InstanceType.objects.filter(active=True).select_related("gpu_type")


def images_in(*, region: Region) -> QuerySet[Image]:
    return Image.objects.filter(active=True, regions=region)


# The operator rewrites nodes every resync (30 s by default); older rows mean it is not reaching the region.
CAPACITY_STALE_AFTER = timedelta(minutes=5)
GIB_BYTES = 1024**3


def _room(pool: RegionCapacity, held: dict[str, int], instance_type: InstanceType) -> int | None:
    """How many more of the type fit beside what is held: negative when instances hold more than the pool
    has; None when the pool declares nothing to count."""
    limits = []
    if instance_type.gpu_count:
        limits.append((pool.gpus - (held.get("gpus") or 0)) // instance_type.gpu_count)
    if pool.vcpu:
        limits.append((pool.vcpu - (held.get("vcpu") or 0)) // instance_type.vcpu)
    if pool.memory_gib:
        limits.append((pool.memory_gib - (held.get("memory_gib") or 0)) // instance_type.memory_gib)
    return min(limits) if limits else None


def _fits(pool: RegionCapacity, held: dict[str, int], instance_type: InstanceType) -> int:
    room = _room(pool, held, instance_type)
    return max(0, room) if room is not None else 0


def availability() -> dict[tuple[Any, Any], int]:
    """(region_id, instance_type_id) -> how many more instances of that type could launch there now.

    From each pool's capacity (declared by staff, or observed by the operator) minus what instances hold,
    and for GPU types no more than fit node by node (`node_room`). A region in maintenance offers its types
    with none available. Five queries, whatever the catalog size.
    """
    held = holdings.held_by_pool()
    closed = set(Region.objects.filter(status=RegionStatus.MAINTENANCE).values_list("pk", flat=True))
    pools_by_gpu_type: dict[Any, list[RegionCapacity]] = defaultdict(list)
    for pool in RegionCapacity.objects.all():
        pools_by_gpu_type[pool.gpu_type_id].append(pool)
    nodes_by_pool: dict[tuple[Any, Any], list[RegionNode]] = defaultdict(list)
    for node in _observed_nodes().exclude(gpu_type=None):
        nodes_by_pool[(node.region_id, node.gpu_type_id)].append(node)
    result: dict[tuple[Any, Any], int] = {}
    for instance_type in InstanceType.objects.filter(active=True):
        for pool in pools_by_gpu_type.get(instance_type.gpu_type_id, []):
            held_here = held.get((pool.region_id, pool.gpu_type_id), {})
            fits = 0 if pool.region_id in closed else _fits(pool, held_here, instance_type)
            nodes = nodes_by_pool.get((pool.region_id, pool.gpu_type_id))
            if nodes:  # GPU pools only (CPU-only nodes are left out above): CPU types keep the sum
                fits = min(fits, _node_room(nodes, instance_type))
            result[(pool.region_id, instance_type.pk)] = fits
    return result


def node_room(*, region: Region, instance_type: InstanceType, zone: str = "") -> int | None:
    """How many instances of a GPU type fit on the region's nodes of that GPU, node by node, beside what
    the pods there request, as the operator last saw them; None when it has reported none recently (a pool
    declared by staff only, or an operator that stopped reporting) and for CPU-only types.

    The pool's sum counts GPUs, vCPU and memory over all nodes together, so it overstates what fits on
    real machines: four 8-GPU nodes with 4 GPUs taken each leave 16 GPUs and no room for an 8-GPU
    instance; four nodes of 1750 GiB hold 28 instances of 220 GiB where the sum says 31. `zone`: on that
    zone's nodes only, for CPU types too (0 when it has none that fit: a launch pinned there could only
    wait). One query."""
    nodes = _observed_nodes().filter(region=region, gpu_type=instance_type.gpu_type_id)
    if zone:  # a CPU type's: the zone's CPU-only nodes (gpu_type NULL), where its pods go
        return _node_room(list(nodes.filter(zone=zone)), instance_type)
    if not instance_type.gpu_type_id:
        return None
    found = list(nodes)
    return _node_room(found, instance_type) if found else None


def _observed_nodes() -> QuerySet[RegionNode]:
    """Node rows the operator wrote recently enough to go by (older ones: the staff view flags them)."""
    return RegionNode.objects.filter(observed_at__gte=timezone.now() - CAPACITY_STALE_AFTER)


def _node_room(nodes: list[RegionNode], instance_type: InstanceType) -> int:
    return sum(_fits_on(node, instance_type) for node in nodes if node.state == NodeState.READY)


def _fits_on(node: RegionNode, instance_type: InstanceType) -> int:
    free_memory = node.memory_allocatable_bytes - node.memory_requested_bytes
    limits = [
        int((node.vcpu_allocatable - node.vcpu_requested) // instance_type.vcpu),
        free_memory // (instance_type.memory_gib * GIB_BYTES),
    ]
    if instance_type.gpu_count:
        limits.append((node.gpus_allocatable - node.gpus_requested) // instance_type.gpu_count)
    return max(0, min(limits))


def available_count(*, region: Region, instance_type: InstanceType, lock: bool = False) -> int:
    """Availability of one type in one region (what a launch checks).

    `lock`: hold the pool's row FOR UPDATE until the caller's transaction ends, so launches and starts of
    every tenant into one pool queue there and none sees capacity another is about to take (the quota row is
    locked first: lock order quota, pool, instance). What instances hold is summed over the pool's rows that
    hold compute (a partial index), never over terminated history."""
    if region.status == RegionStatus.MAINTENANCE:
        return 0
    pools = RegionCapacity.objects.select_for_update() if lock else RegionCapacity.objects.all()
    pool = pools.filter(region=region, gpu_type=instance_type.gpu_type_id).first()
    if pool is None:
        return 0
    held = holdings.held_by_pool(region_id=region.pk, gpu_type_id=instance_type.gpu_type_id)
    return _fits(pool, held.get((region.pk, instance_type.gpu_type_id), {}), instance_type)


def pool_overcommitted(*, region: Region, instance_type: InstanceType) -> bool:
    """True when what instances hold in the type's pool exceeds what it has, read with the pool's row
    locked FOR UPDATE until the caller's transaction ends.

    A launch calls this last, after writing its instance (which the sum then counts): concurrent launches
    into one pool queue on this row for two statements and their commit only, not for the whole launch
    (burst_admission, docs/benchmarks.md). A region in maintenance, or without the pool, has no room."""
    if region.status == RegionStatus.MAINTENANCE:
        return True
    pools = RegionCapacity.objects.select_for_update()
    pool = pools.filter(region=region, gpu_type=instance_type.gpu_type_id).first()
    if pool is None:
        return True
    held = holdings.held_by_pool(region_id=region.pk, gpu_type_id=instance_type.gpu_type_id)
    room = _room(pool, held.get((region.pk, instance_type.gpu_type_id), {}), instance_type)
    return room is None or room < 0


# --- zones ------------------------------------------------------------------------------------------------


def region_zones() -> dict[Any, list[str]]:
    """Region id -> its zones, sorted: the `topology.kubernetes.io/zone` values of the nodes the operator
    saw there recently, whatever their state (a zone whose nodes are all down is still a zone: launches
    naming it are refused for capacity, not as unknown). A region without zone labels has none. One query."""
    zones: dict[Any, set[str]] = defaultdict(set)
    for region_id, zone in _observed_nodes().exclude(zone="").values_list("region_id", "zone").distinct():
        zones[region_id].add(zone)
    return {region_id: sorted(names) for region_id, names in zones.items()}


def zones_of(region: Region) -> list[str]:
    return region_zones().get(region.pk, [])


def check_zone(region: Region, zone: Any) -> str:
    """`zone` as a launch or a volume names it: "" (any zone) or one of the region's zones."""
    if zone is None or zone == "":
        return ""
    known = zones_of(region)
    if not isinstance(zone, str) or zone not in known:
        listed = ", ".join(known) if known else "none (the region has no zones)"
        raise invalid("zone", f"Unknown zone {zone!r} in region '{region.slug}'; its zones: {listed}.")
    return zone


def availability_by_zone(
    regional: dict[tuple[Any, Any], int] | None = None,
) -> dict[tuple[Any, Any], dict[str, int]]:
    """(region_id, instance_type_id) -> zone -> how many more of the type could launch in that zone now:
    what fits node by node on the zone's ready nodes (of the type's GPU; CPU-only nodes for a CPU type),
    never more than the region's availability (`regional`, availability()'s, when the caller has it).
    Types and regions without zoned nodes are left out. Two queries besides availability()'s."""
    regional = availability() if regional is None else regional
    nodes_by_zone: dict[tuple[Any, Any, str], list[RegionNode]] = defaultdict(list)
    for node in _observed_nodes().exclude(zone=""):
        nodes_by_zone[(node.region_id, node.gpu_type_id, node.zone)].append(node)
    by_zone_name = sorted(nodes_by_zone.items(), key=lambda kv: kv[0][2])
    result: dict[tuple[Any, Any], dict[str, int]] = defaultdict(dict)
    for instance_type in InstanceType.objects.filter(active=True):
        for (region_id, gpu_type_id, zone), nodes in by_zone_name:
            key = (region_id, instance_type.pk)
            if gpu_type_id != instance_type.gpu_type_id or key not in regional:
                continue
            result[key][zone] = min(regional[key], _node_room(nodes, instance_type))
    return dict(result)


def node_block(node: RegionNode) -> str:
    """The block a node counts in: its block label's value, else its zone (a region without topology
    labels is one block per zone), else the region as a whole ("")."""
    return node.block or node.zone


def whole_nodes_free(*, region: Region, instance_type: InstanceType, zone: str = "") -> dict[str, int]:
    """Block -> how many nodes of the type's GPU type are wholly free there (ready, no GPU of theirs
    requested by any pod, and room for one instance of the type), as the operator last saw the nodes
    (recently: `_observed_nodes`).

    What a multi-node cluster needs: N whole nodes in one block (or in the region). Per-pool sums
    overstate it: two 8-GPU nodes with 4 GPUs taken each have 8 GPUs free and no whole node. `zone`: that
    availability zone's nodes only. One query."""
    if region.status == RegionStatus.MAINTENANCE or not instance_type.gpu_type_id:
        return {}
    nodes = _free_nodes().filter(region=region, gpu_type=instance_type.gpu_type_id)
    return _whole_free(nodes.filter(zone=zone) if zone else nodes, instance_type)


def block_zone(*, region: Region, block: str) -> str:
    """The availability zone of a topology block ("" when its nodes carry none): a block's nodes share
    one (the fleet's rule, docs/catalog.md "Topology"). One query."""
    nodes = _observed_nodes().filter(region=region).exclude(zone="")
    zone = nodes.filter(Q(block=block) | Q(block="", zone=block)).values_list("zone", flat=True).first()
    return zone or ""


def whole_nodes_free_by_type() -> dict[tuple[Any, Any], dict[str, int]]:
    """(region_id, instance_type_id) -> whole_nodes_free of that type there, for every active GPU type
    in every open region: two queries whatever the fleet (the catalog API lists it per region)."""
    nodes_by_pool: dict[tuple[Any, Any], list[RegionNode]] = defaultdict(list)
    for node in _free_nodes().exclude(region__status=RegionStatus.MAINTENANCE).exclude(gpu_type=None):
        nodes_by_pool[(node.region_id, node.gpu_type_id)].append(node)
    result: dict[tuple[Any, Any], dict[str, int]] = {}
    for instance_type in InstanceType.objects.filter(active=True).exclude(gpu_type=None):
        for (region_id, gpu_type_id), nodes in nodes_by_pool.items():
            if gpu_type_id == instance_type.gpu_type_id:
                result[(region_id, instance_type.pk)] = _whole_free(nodes, instance_type)
    return result


def _free_nodes() -> QuerySet[RegionNode]:
    return _observed_nodes().filter(state=NodeState.READY, gpus_requested=0)


def _whole_free(nodes: Any, instance_type: InstanceType) -> dict[str, int]:
    free: dict[str, int] = defaultdict(int)
    for node in nodes:  # no GPU of theirs requested (_free_nodes): room for one is room for the whole type
        if _fits_on(node, instance_type) >= 1:
            free[node_block(node)] += 1
    return dict(sorted(free.items()))


# --- staff: capacity overview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeOverview:
    name: str
    gpu_label: str  # GPU type slug; the product label when the catalog lacks it; "" for CPU-only nodes
    gpu_resource: str
    gpus_allocatable: int
    gpus_requested: int
    gpus_requested_by_instances: int
    vcpu_allocatable: Decimal
    vcpu_requested: Decimal
    memory_gib_allocatable: int
    memory_gib_requested: int
    state: str
    state_label: str
    reason: str
    instance_type: str
    zone: str
    block: str
    rack: str
    observed_at: datetime
    stale: bool

    @property
    def counts_toward_total(self) -> bool:
        return self.state == NodeState.READY


@dataclass
class GpuTypeOverview:
    """One GPU type in one region. `total`: allocatable on ready, schedulable nodes; `used_by_instances`:
    what our instances holding compute have (as the catalog's availability counts it); `used_by_others`:
    requests of any other pod on those nodes."""

    label: str
    gpu_type: GpuType | None
    resource: str
    nodes: int = 0
    total: int = 0
    used_by_instances: int = 0
    used_by_others: int = 0

    @property
    def used(self) -> int:
        return self.used_by_instances + self.used_by_others

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)

    @property
    def percent_used(self) -> int:
        if not self.total:
            return 100 if self.used else 0
        return min(100, round(self.used * 100 / self.total))


@dataclass
class ZoneOverview:
    name: str
    nodes: int = 0
    ready: int = 0
    gpus: int = 0
    gpus_requested: int = 0


@dataclass
class RegionOverview:
    region: Region
    gpu_types: list[GpuTypeOverview] = field(default_factory=list)
    nodes: list[NodeOverview] = field(default_factory=list)
    observed_at: datetime | None = None  # the oldest node row's
    stale: bool = False

    @property
    def zones(self) -> list[ZoneOverview]:
        """Per availability zone (sorted; "" for unlabelled nodes): its nodes, how many are ready, and its
        GPUs allocatable and requested on the ready ones."""
        by_zone: dict[str, ZoneOverview] = {}
        for node in self.nodes:
            zone = by_zone.setdefault(node.zone, ZoneOverview(name=node.zone))
            zone.nodes += 1
            if node.state == NodeState.READY:
                zone.ready += 1
                zone.gpus += node.gpus_allocatable
                zone.gpus_requested += node.gpus_requested
        return [by_zone[name] for name in sorted(by_zone)]

    @property
    def states(self) -> dict[str, int]:
        """Node count per state label, in the order of NodeState."""
        counts = {label: 0 for _, label in NodeState.choices}
        for node in self.nodes:
            counts[node.state_label] += 1
        return {label: count for label, count in counts.items() if count}


def _gib(value: int) -> int:
    return value // GIB_BYTES


def _cores(value: Decimal) -> Decimal:
    """4.500 -> 4.5, 62.000 -> 62 (normalize alone would write 2E+2)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def capacity_overview(*, now: datetime | None = None) -> list[RegionOverview]:
    """Per region: GPUs total, used and free by type, and every node the operator last saw with its state.

    Four queries whatever the fleet size."""
    now = now or timezone.now()
    labels = dict(NodeState.choices)
    overviews = {region.pk: RegionOverview(region=region) for region in Region.objects.all()}
    gpu_types = {g.pk: g for g in GpuType.objects.all()}
    by_type: dict[tuple[Any, Any], GpuTypeOverview] = {}

    def pool(region_id: Any, gpu_type_id: Any, product: str = "", resource: str = "") -> GpuTypeOverview:
        key = (region_id, gpu_type_id if gpu_type_id is not None else ("product", product, resource))
        if key not in by_type:
            gpu_type = gpu_types.get(gpu_type_id)
            label = gpu_type.slug if gpu_type else f"{product or 'unlabelled'} (not in the catalog)"
            by_type[key] = GpuTypeOverview(
                label=label, gpu_type=gpu_type, resource=gpu_type.resource_name if gpu_type else resource
            )
        return by_type[key]

    for row in RegionNode.objects.all().order_by("name"):
        overview = overviews.get(row.region_id)
        if overview is None:
            continue
        stale = now - row.observed_at > CAPACITY_STALE_AFTER
        gpu_label = ""
        if row.gpu_resource:
            entry = pool(row.region_id, row.gpu_type_id, row.gpu_product, row.gpu_resource)
            gpu_label = entry.gpu_type.slug if entry.gpu_type else row.gpu_product
            entry.nodes += 1
            if row.state == NodeState.READY:
                entry.total += row.gpus_allocatable
                entry.used_by_others += max(0, row.gpus_requested - row.gpus_requested_by_instances)
        overview.nodes.append(
            NodeOverview(
                name=row.name,
                gpu_label=gpu_label,
                gpu_resource=row.gpu_resource,
                gpus_allocatable=row.gpus_allocatable,
                gpus_requested=row.gpus_requested,
                gpus_requested_by_instances=row.gpus_requested_by_instances,
                vcpu_allocatable=_cores(row.vcpu_allocatable),
                vcpu_requested=_cores(row.vcpu_requested),
                memory_gib_allocatable=_gib(row.memory_allocatable_bytes),
                memory_gib_requested=_gib(row.memory_requested_bytes),
                state=row.state,
                state_label=labels.get(row.state, row.state),
                reason=row.reason,
                instance_type=row.instance_type,
                zone=row.zone,
                block=row.block,
                rack=row.rack,
                observed_at=row.observed_at,
                stale=stale,
            )
        )
        if overview.observed_at is None or row.observed_at < overview.observed_at:
            overview.observed_at = row.observed_at
    for (region_id, gpu_type_id), held in holdings.held_by_pool().items():
        if gpu_type_id is not None and region_id in overviews and held["gpus"]:
            pool(region_id, gpu_type_id).used_by_instances += held["gpus"]
    for (region_id, _), entry in sorted(by_type.items(), key=lambda item: item[1].label):
        overviews[region_id].gpu_types.append(entry)
    for overview in overviews.values():
        oldest = overview.observed_at
        overview.stale = oldest is not None and now - oldest > CAPACITY_STALE_AFTER
    return list(overviews.values())
