"""Writes for clusters: admission of all their nodes at once, actions on the whole, and settling a node's
failure (docs/clusters.md).

A cluster is admitted whole or not at all, in one transaction: the tenant's quota row locked for N
instances' worth of GPUs, vCPU and memory; funds for N nodes' price; the capacity pool's row locked, and
under that lock a block chosen that has N wholly free nodes (catalog.whole_nodes_free) less the nodes
promised to clusters admitted but not placed yet. Lock order as for instances: quota, pool, instance rows,
then the cluster's row (cluster_sync).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.catalog import selectors as catalog
from apps.catalog.models import InstanceType, Region, RegionNode
from apps.core import metrics
from apps.core import tags as core_tags
from apps.core.errors import Conflict
from apps.core.funds import require_funds
from apps.instances import services, validation
from apps.instances.cluster_states import ACTIONS, UNPLACED, ClusterState, allowed_actions
from apps.instances.cluster_sync import cluster_sync
from apps.instances.models import (
    Cluster,
    DesiredState,
    Instance,
    OnNodeFailure,
    Placement,
    frozen_terms,
)
from apps.instances.states import ACTIVE, Action, FailureReason, Observation, State
from apps.quotas.services import Demand, admit
from apps.storage import attachments as storage
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)

ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_NAME = 40  # node names are NAME-RANK, within the 63 of an instance's name


@dataclass
class ClusterRequest:
    instance_type: str
    region: str
    image: str
    node_count: int
    name: str | None = None
    placement: str = Placement.BLOCK
    on_node_failure: str = OnNodeFailure.REPLACE
    ssh_key_ids: list[Any] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    auto_stop_after: int | None = None
    max_runtime: int | None = None
    # [{"volume_id": ..., "mount_path": "/shared"}]: ReadWriteMany volumes mounted on every node.
    volumes: list[dict[str, Any]] = field(default_factory=list)
    # The cluster's tags, which its nodes carry too (apps/core/tags.py).
    tags: dict[str, Any] = field(default_factory=dict)
    # One of the region's availability zones: the cluster's block (or nodes, placement any) in it.
    zone: str | None = None


@dataclass(frozen=True)
class Placed:
    block: str  # "" for placement any
    block_label: str


def _no_capacity(message: str, details: dict[str, Any]) -> Conflict:
    metrics.refused("no_capacity")
    return Conflict(message, code="no_capacity", details=details)


def _promised(region: Region, instance_type: InstanceType) -> tuple[dict[str, int], int]:
    """Nodes of the type's GPU promised to clusters admitted but not placed yet: by block, and those of
    placement `any` (anywhere). Without this, two admissions a moment apart would both count one block's
    free nodes before the scheduler had bound either cluster's pods."""
    rows = (
        Cluster.objects.filter(
            region=region, instance_type__gpu_type=instance_type.gpu_type_id, state__in=list(UNPLACED)
        )
        .values("block")
        .annotate(promised=Sum("node_count"))
    )
    by_block: dict[str, int] = defaultdict(int)
    anywhere = 0
    for row in rows:
        if row["block"]:
            by_block[row["block"]] += row["promised"]
        else:
            anywhere += row["promised"]
    return by_block, anywhere


def _block_label(region: Region, block: str) -> str:
    """The node label that carries `block`: the region's block label when nodes there carry it, else the
    zone label (catalog.node_block counts a node without a block label in its zone)."""
    labelled = RegionNode.objects.filter(region=region, block=block).exists()
    return region.topology_block_label if labelled else ZONE_LABEL


def place(
    *, region: Region, instance_type: InstanceType, nodes: int, placement: str, zone: str = ""
) -> Placed:
    """Choose where the cluster goes, or refuse (409 no_capacity naming what is short; 409
    region_unavailable in maintenance). Call after the quota admission: this locks the pool's row until
    the caller's transaction ends (lock order quota, pool), so every cluster and instance admission into
    the pool queues there and two racing for the last block cannot both get it.

    Placement `block` takes the block with the fewest free nodes that still holds all N (best fit: the
    big blocks stay whole for big clusters). `zone`: that availability zone's blocks and nodes only."""
    services._require_region_open(region)
    if catalog.available_count(region=region, instance_type=instance_type, lock=True) < nodes:
        raise _no_capacity(
            f"{region.slug} has capacity for fewer than {nodes} {instance_type.slug} right now.",
            {"placement": placement, "nodes": nodes},
        )
    free = catalog.whole_nodes_free(region=region, instance_type=instance_type, zone=zone)
    promised, anywhere = _promised(region, instance_type)
    room = {block: n - promised.get(block, 0) for block, n in free.items()}
    total = sum(room.values()) - anywhere
    details = {
        "placement": placement,
        "nodes": nodes,
        "largest_block_free": max(room.values(), default=0),
        "region_free": max(total, 0),
        **({"zone": zone} if zone else {}),
    }
    where = f"zone {zone} of {region.slug}" if zone else region.slug
    if placement == Placement.ANY:
        if total < nodes:
            raise _no_capacity(
                f"{where} has {max(total, 0)} whole {instance_type.slug} nodes free; "
                f"this cluster needs {nodes}.",
                details,
            )
        return Placed(block="", block_label="")
    fitting = sorted((n, block) for block, n in room.items() if n >= nodes)
    if not fitting or total < nodes:
        raise _no_capacity(
            f"No topology block in {where} has {nodes} whole {instance_type.slug} nodes free "
            f"(the most in one block: {details['largest_block_free']}, "
            f"in the region: {details['region_free']}). "
            "Use placement 'any' to spread across blocks, fewer nodes, or try later.",
            details,
        )
    block = fitting[0][1]
    return Placed(block=block, block_label=_block_label(region, block))


def _demand(instance_type: InstanceType, region: Region, nodes: int, *, new: bool) -> Demand:
    return Demand(
        gpu_type=instance_type.gpu_type,
        gpus=instance_type.gpu_count * nodes,
        vcpu=instance_type.vcpu * nodes,
        memory_gib=instance_type.memory_gib * nodes,
        region=region,
        new_instances=nodes if new else 0,
    )


def _check_request(region: Region, instance_type: InstanceType, req: ClusterRequest) -> None:
    if not instance_type.whole_node:
        raise validation.invalid(
            "instance_type",
            f"'{instance_type.slug}' is not a whole-node type; clusters are made of whole nodes "
            "(see whole_node in /api/v1/instance-types).",
        )
    if not isinstance(req.node_count, int) or not 1 <= req.node_count <= region.max_cluster_nodes:
        raise validation.invalid(
            "node_count", f"Must be between 1 and {region.max_cluster_nodes} in {region.slug}."
        )
    if req.placement not in Placement.values:
        raise validation.invalid("placement", f"Must be one of {', '.join(Placement.values)}.")
    if req.on_node_failure not in OnNodeFailure.values:
        raise validation.invalid("on_node_failure", f"Must be one of {', '.join(OnNodeFailure.values)}.")


@transaction.atomic
def cluster_create(*, actor: User, tenant: Tenant, req: ClusterRequest) -> Cluster:
    """Admit and write the cluster and its N nodes, or refuse having written nothing."""
    services._require_active_tenant(tenant, "launch clusters")
    launch = services.LaunchRequest(instance_type=req.instance_type, region=req.region, image=req.image)
    instance_type, region = services._resolve_type_and_region(launch)
    _check_request(region, instance_type, req)
    name = (
        validation.check_name(req.name) if req.name is not None else services._generated_name(instance_type)
    )
    if len(name) > MAX_NAME:
        raise validation.invalid("name", f"At most {MAX_NAME} characters (nodes are named NAME-RANK).")
    env = validation.check_env(req.env)
    command = validation.check_command(req.command)
    tags = core_tags.check_tags(req.tags)
    services._check_timer("auto_stop_after", req.auto_stop_after)
    services._check_timer("max_runtime", req.max_runtime)
    image, image_reference = services._resolve_image(req.image, region)
    if not command and image is not None:
        command = list(image.command)
    ssh_keys = services._resolve_ssh_keys(tenant, actor, req.ssh_key_ids)
    mounts = storage.check_mount_requests(req.volumes)
    nodes = req.node_count
    zone = catalog.check_zone(region, req.zone)

    # 402: the wallet must carry the whole cluster's price for the launch runway.
    require_funds(tenant=tenant, price_per_hour=instance_type.price_per_hour * nodes)
    admit(tenant=tenant, demand=_demand(instance_type, region, nodes, new=True))
    placed = place(
        region=region, instance_type=instance_type, nodes=nodes, placement=req.placement, zone=zone
    )
    # Its nodes are pinned to the zone asked for, else to their block's (a block is in one zone).
    zone = zone or (catalog.block_zone(region=region, block=placed.block) if placed.block else "")
    cluster = Cluster(
        tenant=tenant,
        name=name,
        region=region,
        instance_type=instance_type,
        node_count=nodes,
        price_per_hour=instance_type.price_per_hour,
        placement=req.placement,
        block=placed.block,
        block_label=placed.block_label,
        zone=zone,
        on_node_failure=req.on_node_failure,
        image_reference=image_reference,
        command=command,
        env=env,
        auto_stop_after=req.auto_stop_after,
        max_runtime=req.max_runtime,
        state=ClusterState.PENDING,
        tags=tags,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            cluster.save()
            members = Instance.objects.bulk_create(
                [
                    Instance(
                        tenant=tenant,
                        name=f"{name}-{rank}",
                        region=region,
                        instance_type=instance_type,
                        **frozen_terms(instance_type),
                        image=image,
                        image_reference=image_reference,
                        zone=zone,
                        env=env,
                        command=command,
                        created_by=actor,
                        cluster=cluster,
                        rank=rank,
                        holds_compute=True,
                        tags=tags,  # a node's usage is grouped by its cluster's tags
                    )
                    for rank in range(nodes)
                ]
            )
    except IntegrityError as exc:
        raise validation.invalid(
            "name", f"A cluster named '{name}', or an instance named '{name}-N', already exists."
        ) from exc
    if ssh_keys:
        through = Instance.ssh_keys.through
        through.objects.bulk_create(
            [through(instance_id=node.pk, sshkey_id=key.pk) for node in members for key in ssh_keys]
        )
    for node in members:
        _attach_shared(node, mounts, actor)
        services._event(node, kind="action", name="launch", from_state="", actor=actor, sync_cluster=False)
    audit_record(
        actor=actor,
        action="cluster.create",
        target=cluster,
        tenant=tenant,
        changes={
            "name": name,
            "instance_type": instance_type.slug,
            "region": region.slug,
            "node_count": nodes,
            "placement": req.placement,
            "block": placed.block,
            **({"zone": zone} if zone else {}),
            "image": image_reference,
            **({"volumes": [{"volume_id": v, "mount_path": p} for v, p in mounts]} if mounts else {}),
            **({"tags": tags} if tags else {}),
        },
    )
    # Counted with every node just written, as a launch does last (services._hold_capacity).
    if catalog.pool_overcommitted(region=region, instance_type=instance_type):
        raise _no_capacity(
            f"No capacity for {nodes} {instance_type.slug} in {region.slug}.", {"nodes": nodes}
        )
    for node in members:
        services._queue_reconcile(node)
    return cluster


def _attach_shared(node: Instance, mounts: list[tuple[str, str]], actor: User) -> None:
    """The cluster's shared volumes, on this node too: only a volume many may hold can be shared."""
    try:
        storage.attach_at_launch(instance=node, pairs=mounts, actor=actor)
    except Conflict as exc:
        if exc.code != "volume_in_use":
            raise
        raise validation.invalid(
            "volumes",
            f"A cluster's volumes are mounted on every node: each must be ReadWriteMany ({exc.message})",
        ) from exc


def _nodes(cluster: Cluster) -> list[Instance]:
    return list(
        Instance.objects.filter(cluster=cluster)
        .select_related("tenant", "region", "instance_type")
        .order_by("rank")
    )


def _check_action(cluster: Cluster, action: Action) -> None:
    if cluster.state not in ACTIONS[action]:
        raise services.InvalidState(
            f"Cannot {action.value} a cluster that is {cluster.state}.",
            details={"state": cluster.state, "allowed_actions": allowed_actions(cluster.state)},
        )


@transaction.atomic
def cluster_act(*, actor: User | None, cluster: Cluster, action: Action, reason: str = "") -> Cluster:
    """Stop, start or terminate every node. A start is admitted whole like a creation: quota and funds for
    all nodes, a block with room for all of them (the nodes may land on other machines than before)."""
    cluster = Cluster.objects.select_related("tenant", "region", "instance_type").get(pk=cluster.pk)
    _check_action(cluster, action)
    nodes = _nodes(cluster)
    if action == Action.START:
        services._require_active_tenant(cluster.tenant, "start clusters")
        n = len(nodes)
        require_funds(tenant=cluster.tenant, price_per_hour=cluster.price_per_hour * n)
        admit(tenant=cluster.tenant, demand=_demand(cluster.instance_type, cluster.region, n, new=False))
        placed = place(
            region=cluster.region, instance_type=cluster.instance_type, nodes=n, placement=cluster.placement
        )
        Cluster.objects.filter(pk=cluster.pk).update(
            block=placed.block, block_label=placed.block_label, failure_reason="", state_message=""
        )
    for node in nodes:
        if node.state in services.ACTIONS[action]:
            services.instance_act(
                actor=actor, instance=node, action=action, reason=reason, by_cluster=True, sync_cluster=False
            )
    desired = {Action.STOP: DesiredState.STOPPED, Action.TERMINATE: DesiredState.TERMINATED}.get(
        action, DesiredState.RUNNING
    )
    fields: dict[str, Any] = {"desired_state": desired}
    if action == Action.START:
        # Started again: a node lost before all run fails it again; one lost after degrades it.
        fields.update(state=ClusterState.STARTING, ran_at=None, state_changed_at=timezone.now())
    Cluster.objects.filter(pk=cluster.pk).update(**fields)
    synced = cluster_sync(cluster.pk)
    assert synced is not None
    audit_record(
        actor=actor,
        action=f"cluster.{action.value}",
        target=synced,
        tenant=synced.tenant,
        changes={"state": {"from": cluster.state, "to": synced.state}},
        metadata={"reason": reason} if reason else None,
    )
    return synced


@transaction.atomic
def cluster_tags_update(*, actor: User, cluster: Cluster, changes: Any) -> Cluster:
    """Change the cluster's tags by a merge patch (apps/core/tags.py) and give every node the cluster's new
    tags, in one transaction: a node's usage is grouped and budgeted under its cluster's tags. Audited once,
    as cluster.tags, naming the nodes."""
    patch = core_tags.check_changes(changes)
    # Lock order: instance rows, then the cluster's row (as cluster_sync takes them).
    nodes = list(
        Instance.objects.select_for_update(of=("self",))
        .filter(cluster_id=cluster.pk)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    cluster = Cluster.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=cluster.pk)
    if cluster.state == ClusterState.TERMINATED:
        raise services.InvalidState(
            "A terminated cluster's tags cannot change.",
            details={"state": cluster.state, "allowed_actions": []},
        )
    before = dict(cluster.tags)
    after = core_tags.merged(before, patch)
    if after == before:
        return cluster
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(tags=after, updated_at=now)
    Instance.objects.filter(pk__in=nodes).update(tags=after, updated_at=now)
    cluster.tags = after
    audit_record(
        actor=actor,
        action="cluster.tags",
        target=cluster,
        tenant=cluster.tenant,
        changes={"tags": {"from": before, "to": after}},
        metadata={"nodes": [str(pk) for pk in nodes]},
    )
    return cluster


def cluster_settle(cluster_id: Any) -> None:
    """Act on a cluster whose node failed or was lost (signals.cluster_needs_settling, once committed).

    Failed before it ran: every other node fails too and gives its GPUs back (the operator deletes their
    pods), so a cluster never runs, or bills, in part. Lost after it ran (degraded): per on_node_failure,
    the node is started again on the cluster's block (replace), or the whole cluster stops, or it fails."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None or cluster.desired_state != DesiredState.RUNNING:
        return
    if cluster.state == ClusterState.FAILED:
        _fail_nodes(cluster)
    elif cluster.state == ClusterState.DEGRADED:
        if cluster.on_node_failure == OnNodeFailure.REPLACE:
            _replace_lost(cluster)
        elif cluster.on_node_failure == OnNodeFailure.STOP:
            cluster_act(actor=None, cluster=cluster, action=Action.STOP, reason="node_lost")
        else:
            with transaction.atomic():
                Cluster.objects.filter(pk=cluster.pk).update(
                    state=ClusterState.FAILED,
                    failure_reason="node_lost",
                    state_changed_at=timezone.now(),
                    state_message="A node was lost and the cluster's on_node_failure is 'fail'.",
                )
            _fail_nodes(cluster)


def _fail_nodes(cluster: Cluster) -> None:
    message = f"Another node of cluster {cluster.name} failed ({cluster.failure_reason or 'internal'})."
    for node in Instance.objects.filter(cluster=cluster, state__in=[s.value for s in ACTIVE]):
        failed = services.instance_observe(
            instance_id=node.pk,
            observation=Observation.FAILED,
            reason=FailureReason.CLUSTER_FAILED,
            message=message,
        )
        if failed is not None:
            services._queue_reconcile(failed)


def _replace_lost(cluster: Cluster) -> None:
    """Start each lost node again: its pod goes on the cluster's block (the gang's other pods still run)."""
    for node in Instance.objects.filter(cluster=cluster, state__in=[State.FAILED, State.STOPPED]):
        node = Instance.objects.select_related("tenant", "region", "instance_type").get(pk=node.pk)
        try:
            services.instance_act(
                actor=None, instance=node, action=Action.START, reason="replace_lost_node", by_cluster=True
            )
        except services.InvalidState:
            logger.info("cluster %s: node %s moved on before its replacement", cluster.pk, node.pk)
