"""Writes for instances: launch, customer actions, and what the operator observes.

Lock order, everywhere: the tenant's quota row, then the capacity pool's row (launch and start), then the
instance row. Each change that the operator must act
on bumps `generation` and sends `instance_changed` once the transaction commits (the operator reconciles);
each timeline line sends `instance_state_changed` (billing meters). See apps/instances/signals.py.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.accounts.models import SshKey, User
from apps.audit.services import audit_record
from apps.catalog import selectors as catalog
from apps.catalog.models import Image, ImagePolicy, InstanceType, Region
from apps.catalog.registries import registry_refusal
from apps.core import metrics, notify, request_context
from apps.core import tags as core_tags
from apps.core.errors import Conflict, Forbidden
from apps.core.funds import require_funds
from apps.instances import notifications, selectors, validation
from apps.instances.cluster_sync import cluster_sync
from apps.instances.models import DesiredState, Instance, InstanceEvent, frozen_terms
from apps.instances.signals import instance_changed, instance_state_changed
from apps.instances.states import (
    ACTIONS,
    STARTS_BILLING,
    Action,
    FailureReason,
    InvalidTransition,
    Observation,
    State,
    after_action,
    after_observation,
    holds_compute_after,
)
from apps.quotas.services import Demand, admit
from apps.storage import attachments as storage
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

MIN_TIMER_SECONDS = 60
MAX_TIMER_SECONDS = 90 * 24 * 3600


@dataclass
class LaunchRequest:
    instance_type: str
    region: str
    image: str
    name: str | None = None
    ssh_key_ids: list[Any] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    auto_stop_after: int | None = None
    max_runtime: int | None = None
    # [{"volume_id": ..., "mount_path": "/data"}]: volumes of the tenant in the same region (apps/storage).
    volumes: list[dict[str, Any]] = field(default_factory=list)
    # {"team": "ml"}: checked by apps/core/tags.py; copied into the usage ledger when metered.
    tags: dict[str, Any] = field(default_factory=dict)
    # One of the region's availability zones (catalog.zones_of), or None: any (docs/networking.md "Zones").
    zone: str | None = None


class InvalidState(Conflict):
    code = "invalid_state"


def _queue_reconcile(instance: Instance) -> None:
    """Once this commits, the operator reconciles the instance: its leader for the region at once (woken by
    the NOTIFY, which PostgreSQL sends at the commit), and the task apps.operator queues on
    instance_changed as the fallback (docs/operator.md "The launch path")."""
    instance_id, generation, state = str(instance.pk), instance.generation, str(instance.state)
    notify.notify(notify.INSTANCE_CHANGED, f"{instance.region_id} {instance_id}")
    transaction.on_commit(
        lambda: instance_changed.send(
            sender=Instance, instance_id=instance_id, generation=generation, state=state
        )
    )


def _event(
    instance: Instance,
    *,
    kind: str,
    name: str,
    from_state: str,
    actor: User | None,
    reason: str = "",
    message: str = "",
    at: Any = None,
    billing_changed: bool = False,
    sync_cluster: bool = True,
) -> None:
    """`at`: the moment the state changed, as the instance's clock recorded it; the ledger is metered from
    these events, so both must read the time once (a pause between two readings would bill a different
    time than the instance shows). `billing_changed`: this event starts or stops the billing clock."""
    ctx = request_context.current()
    InstanceEvent.objects.create(
        instance=instance,
        created_at=at or timezone.now(),
        kind=kind,
        name=name,
        from_state=from_state,
        to_state=instance.state,
        reason=reason,
        message=message[:500],
        actor_label=actor.email if actor is not None else f"system:{ctx.via}",
        request_id=ctx.request_id if ctx.request_id != "-" else "",
        billable=instance.billing_since is not None,
    )
    # Waiters on the instance's state (the API's ?wait=) hear of it once this commits.
    notify.notify(notify.INSTANCE_STATE, f"{instance.pk} {instance.state}")
    # Announced in this transaction, so a receiver that writes does so atomically with it; one that acts
    # outside the database waits for the commit (billing meters a billed interval that began or ended).
    instance_state_changed.send(
        sender=Instance,
        instance_id=str(instance.pk),
        event=name,
        from_state=from_state,
        to_state=instance.state,
        billing_changed=billing_changed,
        billing_running=instance.billing_since is not None,
    )
    if instance.cluster_id is not None and sync_cluster:
        # A cluster's state is its nodes' (cluster_sync): kept in the same transaction as the node's change.
        cluster_sync(instance.cluster_id)


def _require_active_tenant(tenant: Tenant, doing: str) -> None:
    if tenant.status != TenantStatus.ACTIVE:
        reason = f" Reason: {tenant.status_reason}" if tenant.status_reason else ""
        raise Forbidden(
            f"This tenant is {tenant.status} and cannot {doing}.{reason}", code=f"tenant_{tenant.status}"
        )


def _resolve_type_and_region(req: LaunchRequest) -> tuple[InstanceType, Region]:
    instance_type = (
        InstanceType.objects.select_related("gpu_type").filter(slug=req.instance_type, active=True).first()
    )
    if instance_type is None:
        raise validation.invalid("instance_type", f"Unknown instance type '{req.instance_type}'.")
    region = Region.objects.filter(slug=req.region).first()
    if region is None:
        raise validation.invalid("region", f"Unknown region '{req.region}'.")
    if not region.accepts_launches:
        metrics.refused("region_unavailable")
        raise Conflict(
            f"Region '{region.slug}' is in maintenance and accepts no launches.", code="region_unavailable"
        )
    return instance_type, region


def _resolve_image(reference: str, region: Region) -> tuple[Image | None, str]:
    offered = Image.regions.through.objects.filter(image_id=OuterRef("pk"), region_id=region.pk)
    image = Image.objects.filter(slug=reference, active=True).annotate(offered=Exists(offered)).first()
    if image is not None:
        if not image.offered:  # the annotation above
            raise validation.invalid(
                "image", f"Image '{reference}' is not offered in region '{region.slug}'."
            )
        return image, image.reference
    policy = ImagePolicy.current()
    if not policy.allow_custom_images:
        raise validation.invalid("image", f"Unknown image '{reference}'; custom images are not allowed.")
    registry = validation.image_registry(reference)
    if registry is None:
        raise validation.invalid(
            "image", "Not a valid image reference (registry/repository:tag or @sha256:...)."
        )
    refusal = registry_refusal(registry)
    if refusal is not None:
        raise validation.invalid("image", refusal)
    # An empty allowlist allows no registry: custom images on with nothing listed is a policy half set up.
    if registry not in policy.allowed_registries:
        allowed = ", ".join(policy.allowed_registries)
        raise validation.invalid(
            "image",
            f"Images from '{registry}' are not allowed; use {allowed}."
            if allowed
            else "Custom images are allowed from no registry yet; use a curated image.",
        )
    return None, reference


def _resolve_ssh_keys(tenant: Tenant, actor: User, ids: list[Any]) -> list[SshKey]:
    """Keys shared by the tenant, or private to the launching user; others' private keys do not exist."""
    keys = [
        key for key in SshKey.objects.filter(tenant=tenant, pk__in=ids) if key.user_id in (None, actor.pk)
    ]
    missing = {str(i) for i in ids} - {str(k.pk) for k in keys}
    if missing:
        raise validation.invalid("ssh_key_ids", f"Unknown SSH key {sorted(missing)[0]}.")
    return keys


def _check_timer(name: str, value: int | None) -> None:
    if value is not None and not MIN_TIMER_SECONDS <= value <= MAX_TIMER_SECONDS:
        raise validation.invalid(
            name, f"Must be between {MIN_TIMER_SECONDS} and {MAX_TIMER_SECONDS} seconds."
        )


def _require_region_open(region: Region) -> None:
    if not region.accepts_launches:
        metrics.refused("region_unavailable")
        raise Conflict(
            f"Region '{region.slug}' is in maintenance and starts nothing.", code="region_unavailable"
        )


def _no_capacity(region: Region, instance_type: InstanceType, zone: str = "") -> Conflict:
    metrics.refused("no_capacity")
    if zone:
        return Conflict(
            f"No capacity for {instance_type.slug} in zone {zone} of {region.slug} right now; try another "
            "zone (or none), another region, or later.",
            code="no_capacity",
            details={"zone": zone},
        )
    return Conflict(
        f"No capacity for {instance_type.slug} in {region.slug} right now; try another region or later.",
        code="no_capacity",
    )


def _require_capacity(region: Region, instance_type: InstanceType, zone: str = "") -> None:
    _require_region_open(region)
    # Locks the pool's row (after the quota row): two tenants racing for its last slot queue here.
    if catalog.available_count(region=region, instance_type=instance_type, lock=True) < 1:
        raise _no_capacity(region, instance_type)
    if catalog.node_room(region=region, instance_type=instance_type, zone=zone) == 0:
        raise _no_capacity(region, instance_type, zone)


def _hold_capacity(region: Region, instance_type: InstanceType, zone: str = "") -> None:
    """The launch's last statements: lock the pool's row and refuse (rolling the launch back) if the
    instance just written, counted with every other, does not fit. Taken last, the lock every launch into
    the pool queues on is held for two statements and the commit, not for the launch's writes."""
    if catalog.pool_overcommitted(region=region, instance_type=instance_type):
        raise _no_capacity(region, instance_type)
    # The pool's sum may hide that no single node has room for it (catalog.node_room, from the nodes as
    # the operator last saw them): refuse rather than admit an instance whose pod could only wait. A
    # zoned instance: room on that zone's nodes.
    if catalog.node_room(region=region, instance_type=instance_type, zone=zone) == 0:
        raise _no_capacity(region, instance_type, zone)


def _generated_name(instance_type: InstanceType) -> str:
    return f"{instance_type.slug}-{secrets.token_hex(3)}"[:63]


def _demand(instance_type: InstanceType, region: Region, *, new_instance: bool) -> Demand:
    return Demand(
        gpu_type=instance_type.gpu_type,
        gpus=instance_type.gpu_count,
        vcpu=instance_type.vcpu,
        memory_gib=instance_type.memory_gib,
        region=region,
        new_instance=new_instance,
    )


@transaction.atomic
def instance_launch(*, actor: User, tenant: Tenant, req: LaunchRequest) -> Instance:
    _require_active_tenant(tenant, "launch instances")
    instance_type, region = _resolve_type_and_region(req)
    name = validation.check_name(req.name) if req.name is not None else _generated_name(instance_type)
    env = validation.check_env(req.env)
    command = validation.check_command(req.command)
    tags = core_tags.check_tags(req.tags)
    _check_timer("auto_stop_after", req.auto_stop_after)
    _check_timer("max_runtime", req.max_runtime)
    image, image_reference = _resolve_image(req.image, region)
    if not command and image is not None:
        # A curated image's own command, as staff recorded it (docs/operator-objects.md "Per instance"):
        # frozen on the instance like the rest of its launch terms.
        command = list(image.command)
    ssh_keys = _resolve_ssh_keys(tenant, actor, req.ssh_key_ids)
    mounts = storage.check_mount_requests(req.volumes)
    zone = catalog.check_zone(region, req.zone)

    # 402 insufficient_funds: prepaid balance, credit limit or hard budget short of the launch runway.
    require_funds(tenant=tenant, price_per_hour=instance_type.price_per_hour)
    admit(tenant=tenant, demand=_demand(instance_type, region, new_instance=True))
    _require_region_open(region)
    instance = Instance(
        tenant=tenant,
        name=name,
        region=region,
        instance_type=instance_type,
        **frozen_terms(instance_type),
        image=image,
        image_reference=image_reference,
        zone=zone,
        env=env,
        command=command,
        auto_stop_after=req.auto_stop_after,
        max_runtime=req.max_runtime,
        tags=tags,
        created_by=actor,
    )
    try:
        # No savepoint of its own: the launch's atomic block is one, and this error rolls all of it back.
        instance.save()
    except IntegrityError as exc:
        raise validation.invalid(
            "name", f"An instance named '{name}' already exists in this tenant."
        ) from exc
    if ssh_keys:  # one INSERT; ssh_keys.set() would first read the (empty) relation back
        through = Instance.ssh_keys.through
        through.objects.bulk_create([through(instance_id=instance.pk, sshkey_id=key.pk) for key in ssh_keys])
    attachments = storage.attach_at_launch(instance=instance, pairs=mounts, actor=actor)
    _as_listed(instance, ssh_keys, attachments)
    _event(instance, kind="action", name="launch", from_state="", actor=actor)
    audit_record(
        actor=actor,
        action="instance.launch",
        target=instance,
        tenant=tenant,
        changes={
            "name": name,
            "instance_type": instance_type.slug,
            "region": region.slug,
            "image": image_reference,
            **({"zone": instance.zone} if instance.zone else {}),
            **({"volumes": [{"volume_id": v, "mount_path": p} for v, p in mounts]} if mounts else {}),
            **({"tags": tags} if tags else {}),
        },
    )
    _hold_capacity(region, instance_type, instance.zone)
    _queue_reconcile(instance)
    return instance


def _as_listed(instance: Instance, ssh_keys: list[SshKey], attachments: list[Any]) -> None:
    """Give the new instance the columns selectors.instances_for_api adds, from what the launch has in
    memory, so the API renders it without reading it back (apps/instances/api/representation.py).
    Two keys or volumes are left to the read: the API lists them in PostgreSQL's collation order, which
    Python's sort need not match."""
    if len(ssh_keys) > 1 or len(attachments) > 1:
        return
    instance.__dict__.update(
        selectors.api_columns(
            instance,
            gpu_type=instance.instance_type.gpu_type,  # frozen_terms copied its id: the same row, no read
            ssh_keys=ssh_keys,
            attachments=attachments,
        )
    )


def _locked(instance: Instance) -> Instance:
    # of=("self",): the instance row only. A bare FOR UPDATE locks every joined row too, so each action
    # would hold its tenant, region and instance type FOR UPDATE: every action in a region queued behind
    # one another, and a launch's deferred foreign-key check (FOR KEY SHARE on the tenant at COMMIT)
    # deadlocked against a stop of the same tenant (found by bench/serve_load.py).
    return (
        Instance.objects.select_for_update(of=("self",))
        .select_related("tenant", "region", "instance_type")
        .get(pk=instance.pk)
    )


def _transition(instance: Instance, action: Action) -> str:
    try:
        new_state = after_action(State(instance.state), action)
    except InvalidTransition as exc:
        raise InvalidState(
            f"Cannot {action.value} an instance that is {instance.state}.",
            details={"state": instance.state, "allowed_actions": exc.allowed},
        ) from exc
    before = instance.state
    instance.state = new_state
    instance.holds_compute = holds_compute_after(new_state, instance.holds_compute)
    return before


def _stop_clock(instance: Instance, now: Any) -> None:
    if instance.running_since is not None:
        instance.accrued_running_seconds = instance.running_seconds(now)
        instance.running_since = None


def _stop_billing(instance: Instance, now: Any) -> bool:
    """Stop the billing clock; True if it was running."""
    if instance.billing_since is None:
        return False
    instance.accrued_billed_seconds = instance.billed_seconds(now)
    instance.billing_since = None
    return True


def _start_billing(instance: Instance, now: Any, started_at: Any) -> bool:
    """Start the billing clock at the moment the pod's container started (`started_at`, as the kubelet
    reported it; `now` when unknown): a pod seen late, after an operator outage say, is still billed from
    its start. Never before the instance's last state change, so billed intervals stay in event order, and
    never after now. True if it was not running."""
    if instance.billing_since is not None:
        return False
    start = now if started_at is None else min(now, started_at)
    instance.billing_since = max(start, instance.state_changed_at)
    return True


@transaction.atomic
def instance_act(
    *,
    actor: User | None,
    instance: Instance,
    action: Action,
    reason: str = "",
    delete_volumes: bool = False,
    by_cluster: bool = False,
    sync_cluster: bool = True,
) -> Instance:
    """Stop, start, restart or terminate. `actor` None means the system (auto-stop, staff tooling).
    Terminate keeps the instance's volumes unless `delete_volumes`: then they are deleted once it is gone.
    `by_cluster`: a cluster's node acted on by its cluster (cluster_services), whose admission took quota,
    funds and capacity for all its nodes at once; a customer acts on the cluster, not on one of its nodes
    (409 cluster_node). `sync_cluster` False: the caller syncs the cluster once, after all of its nodes."""
    if instance.cluster_id is not None and not by_cluster and actor is not None:
        raise InvalidState(
            f"This instance is node {instance.rank} of a cluster: stop, start or terminate the cluster.",
            details={"cluster_id": str(instance.cluster_id)},
            code="cluster_node",
        )
    if action in (Action.START, Action.RESTART) and not by_cluster:
        _require_active_tenant(instance.tenant, "start instances")
        # The quota lock comes before the instance lock (lock order); an unlocked look first refuses a start
        # or restart that the state machine would refuse anyway, without queueing behind other launches.
        _transition(Instance.objects.get(pk=instance.pk), action)
        # A new pod bills from the start: the wallet must carry it for the launch runway (402 otherwise).
        require_funds(
            tenant=instance.tenant,
            price_per_hour=instance.instance_type.price_per_hour,
            instance_id=instance.pk,
        )
    if action == Action.START and not by_cluster:
        admit(
            tenant=instance.tenant,
            demand=_demand(instance.instance_type, instance.region, new_instance=False),
        )
        _require_capacity(instance.region, instance.instance_type, instance.zone)
    instance = _locked(instance)
    before = _transition(instance, action)
    if action in (Action.START, Action.RESTART):
        # A new pod would wait forever for a volume that cannot be mounted (its claim was lost): refuse.
        storage.require_volumes_usable(instance=instance)
    now = timezone.now()
    instance.desired_state = {
        Action.STOP: DesiredState.STOPPED,
        Action.TERMINATE: DesiredState.TERMINATED,
    }.get(action, DesiredState.RUNNING)
    billing_changed = False
    if action in (Action.STOP, Action.TERMINATE, Action.RESTART):
        # The pod is asked to go: the customer pays until the request, not until the kubelet is done.
        _stop_clock(instance, now)
        billing_changed = _stop_billing(instance, now)
    if action in (Action.START,):
        instance.failure_reason, instance.state_message = "", ""
    instance.state_changed_at = now
    instance.generation += 1
    instance.save()
    metadata: dict[str, Any] = {"reason": reason} if reason else {}
    if action == Action.TERMINATE and delete_volumes:
        metadata["delete_volumes"] = storage.delete_with_instance(instance=instance)
    _event(
        instance,
        kind="action",
        name=action.value,
        from_state=before,
        actor=actor,
        reason=reason,
        at=now,
        billing_changed=billing_changed,
        sync_cluster=sync_cluster,
    )
    audit_record(
        actor=actor,
        action=f"instance.{action.value}",
        target=instance,
        tenant=instance.tenant,
        changes={"state": {"from": before, "to": instance.state}},
        metadata=metadata or None,
    )
    _queue_reconcile(instance)
    return instance


TENANT_CLOSED_REASON = "tenant closed"


@transaction.atomic
def instances_terminate_for_closed_tenant(*, tenant: Tenant, actor: User | None) -> int:
    """Terminate every instance of a tenant being closed (called inside tenant_close's transaction): a
    closed tenant runs nothing and is billed for nothing more. Their volumes are kept here; closing the
    tenant's storage deletes them."""
    live = Instance.objects.filter(tenant=tenant).exclude(state__in=[State.TERMINATING, State.TERMINATED])
    count = 0
    for instance in live.order_by("pk"):
        instance_act(actor=actor, instance=instance, action=Action.TERMINATE, reason=TENANT_CLOSED_REASON)
        count += 1
    return count


# What a stop applies to (pending, provisioning, starting, running).
STOPPABLE_STATES = tuple(state.value for state in ACTIONS[Action.STOP])


@transaction.atomic
def instances_stop_all(*, tenant: Tenant, actor: User | None, reason: str) -> list[Instance]:
    """Stop (never delete) every instance of `tenant` that a stop applies to, each recording `reason`: the one
    way the system stops all of a tenant's instances (its suspension, an unpaid invoice, a spent balance).
    Returns those now stopping. One instance's trouble does not keep the others running: it is logged and
    the rest are stopped; an instance that moved on since the query (its owner stopped it) is skipped."""
    stopped = []
    for instance in Instance.objects.filter(tenant=tenant, state__in=STOPPABLE_STATES).order_by("pk"):
        try:
            stopped.append(instance_act(actor=actor, instance=instance, action=Action.STOP, reason=reason))
        except InvalidState:
            continue
        except Exception:
            logger.exception("could not stop instance %s of tenant %s", instance.pk, tenant.slug)
    return stopped


@transaction.atomic
def instance_rename(*, actor: User, instance: Instance, name: str) -> Instance:
    instance = _locked(instance)
    if instance.state == State.TERMINATED:
        raise InvalidState(
            "A terminated instance cannot be renamed.",
            details={"state": instance.state, "allowed_actions": []},
        )
    validation.check_name(name)
    before = instance.name
    if before == name:
        return instance
    instance.name = name
    try:
        with transaction.atomic():
            instance.save(update_fields=["name", "updated_at"])
    except IntegrityError as exc:
        raise validation.invalid(
            "name", f"An instance named '{name}' already exists in this tenant."
        ) from exc
    audit_record(
        actor=actor,
        action="instance.rename",
        target=instance,
        tenant=instance.tenant,
        changes={"name": {"from": before, "to": name}},
    )
    return instance


@transaction.atomic
def instance_tags_update(*, actor: User, instance: Instance, changes: Any) -> Instance:
    """Change the instance's tags by a merge patch (apps/core/tags.py: a string sets a key, null removes
    it). Ledger rows metered from now on carry the new tags; rows already written keep theirs. A node's tags
    are its cluster's (409 cluster_node: change the cluster's). Audited as instance.tags."""
    patch = core_tags.check_changes(changes)
    instance = _locked(instance)
    if instance.cluster_id is not None:
        raise InvalidState(
            f"This instance is node {instance.rank} of a cluster: its tags are the cluster's; change them "
            "on the cluster.",
            details={"cluster_id": str(instance.cluster_id)},
            code="cluster_node",
        )
    if instance.state == State.TERMINATED:
        raise InvalidState(
            "A terminated instance's tags cannot change.",
            details={"state": instance.state, "allowed_actions": []},
        )
    before = dict(instance.tags)
    after = core_tags.merged(before, patch)
    if after == before:
        return instance
    instance.tags = after
    instance.save(update_fields=["tags", "updated_at"])
    audit_record(
        actor=actor,
        action="instance.tags",
        target=instance,
        tenant=instance.tenant,
        changes={"tags": {"from": before, "to": after}},
    )
    return instance


@transaction.atomic
def instance_observe(
    *,
    instance_id: Any,
    observation: Observation,
    reason: str = "",
    message: str = "",
    connection: dict[str, Any] | None = None,
    started_at: Any = None,
) -> Instance | None:
    """Record what the operator saw. Stale or repeated observations change nothing (returns None).
    `started_at`: when the pod's container started (POD_STARTED, POD_READY), the start of billing."""
    instance = Instance.objects.select_for_update().filter(pk=instance_id).first()
    if instance is None:
        return None
    before = instance.state
    now = timezone.now()
    starts_billing = (
        observation in (Observation.POD_STARTED, Observation.POD_READY)
        and before in STARTS_BILLING
        and _start_billing(instance, now, started_at)
    )
    new_state = after_observation(State(before), observation) or (State(before) if starts_billing else None)
    if new_state is None:
        return None  # stale or repeated; a container seen started again leaves the running clock alone
    if starts_billing and observation == Observation.POD_READY:
        # Seen Ready at once (or first after an outage): the container's start, where billing begins, is a
        # line of its own before the readiness.
        _event(
            instance,
            kind="observation",
            name=Observation.POD_STARTED.value,
            from_state=before,
            actor=None,
            at=instance.billing_since,
            billing_changed=True,
        )
    # A container start is dated by the kubelet's clock, anything else by ours.
    at = (instance.billing_since or now) if starts_billing and observation == Observation.POD_STARTED else now
    instance.state = new_state
    instance.holds_compute = holds_compute_after(new_state, instance.holds_compute)
    if new_state != before:
        instance.state_changed_at = at
    if new_state == State.RUNNING:
        instance.running_since = now
        instance.connection = connection or instance.connection
    elif before == State.RUNNING or new_state in (State.STOPPED, State.TERMINATED, State.FAILED):
        _stop_clock(instance, now)
    stops_billing = new_state in (State.STOPPED, State.TERMINATED, State.FAILED) and _stop_billing(
        instance, now
    )
    if new_state == State.STOPPED:
        instance.stopped_at, instance.connection = now, {}
    if new_state == State.TERMINATED:
        instance.terminated_at, instance.connection = now, {}
    if new_state == State.FAILED:
        instance.failure_reason, instance.state_message = reason or "internal", message[:500]
    elif before == State.PENDING and new_state != before:
        instance.state_message = ""  # why it waited (instance_note_waiting) is over
    instance.save()
    if new_state == State.TERMINATED:
        storage.release_for_terminated(instance=instance)
    if new_state == State.FAILED:
        failed_id = str(instance.pk)
        transaction.on_commit(lambda: notifications.instance_failed(failed_id))
    _event(
        instance,
        kind="observation",
        name=observation.value,
        from_state=before,
        actor=None,
        reason=reason,
        message=message,
        at=at,
        billing_changed=stops_billing or (starts_billing and observation == Observation.POD_STARTED),
    )
    return instance


def instance_fail_not_ready(*, instance: Instance, now: Any, timeout_seconds: int) -> Instance | None:
    """Fail an instance whose pod has not turned Ready within `timeout_seconds` of entering its state (the
    timer sweep): billing stops now, the operator deletes its pod (queued here, not left to the next
    resync), and its owners get an email. None if it moved on meanwhile."""
    waited = int((now - instance.state_changed_at).total_seconds())
    failed = instance_observe(
        instance_id=instance.pk,
        observation=Observation.FAILED,
        reason=FailureReason.NOT_READY,
        message=(
            f"The instance did not become ready within {timeout_seconds} s ({waited} s in {instance.state}): "
            "nothing answered on its SSH port. Its pod was removed and billing stopped."
        ),
    )
    if failed is not None:
        _queue_reconcile(failed)
    return failed


# States in which an instance's pod may sit on a node that is lost (its container started or about to).
ON_A_NODE = (State.PROVISIONING, State.STARTING, State.RUNNING)


@transaction.atomic
def instance_node_lost(*, instance_id: Any, node: str, zone: str, lost_at: Any) -> Instance | None:
    """The machine under the instance's pod stopped working (not Ready since `lost_at`, its last sign of
    life): billing stops at `lost_at` (never before the instance's last state change, never after now), the
    instance goes back to `starting` under a new generation, so the operator removes the pod and makes
    one on a ready machine, where billing starts again when its container starts. A pinned instance (its
    zone, or its volume's) waits for a machine in its zone. The state message and a `node_lost` event
    say what happened. Cluster nodes are not moved here (their cluster decides: cluster_services). None when
    it is not on a node any more (moved already, stopped, or terminated)."""
    instance = Instance.objects.select_for_update().filter(pk=instance_id).first()
    if instance is None or instance.state not in ON_A_NODE or instance.cluster_id is not None:
        return None
    before, now = instance.state, timezone.now()
    stop_at = min(max(lost_at, instance.state_changed_at), now)
    _stop_clock(instance, stop_at)
    billed = _stop_billing(instance, stop_at)
    where = f"{node} (zone {zone})" if zone else node
    then = f"{stop_at:%Y-%m-%d %H:%M:%S} UTC"
    if instance.zone:
        next_step = f"It waits for a machine in zone {instance.zone}, where it is pinned."
    else:
        next_step = "It is starting again on a ready machine" + (" in another zone." if zone else ".")
    message = (
        f"The machine it ran on, {where}, stopped working at {then}; "
        f"{'billing stopped then. ' if billed else ''}{next_step}"
    )
    instance.state = State.STARTING
    instance.holds_compute = holds_compute_after(State.STARTING, instance.holds_compute)
    instance.state_changed_at = now
    instance.generation += 1  # the pod on the lost machine is not this generation's: the operator removes it
    instance.state_message = message[:500]
    instance.failure_reason = ""
    instance.connection = {}
    instance.save()
    _event(
        instance,
        kind="observation",
        name="node_lost",
        from_state=before,
        actor=None,
        reason=FailureReason.NODE_LOST,
        message=message,
        at=stop_at,
        billing_changed=billed,
    )
    return instance


# States from which a Ready pod makes the instance running in one statement (instance_observe_running).
RUNNING_FROM = (State.PROVISIONING, State.STARTING)


@transaction.atomic
def instance_observe_running(*, instance: Instance, connection: dict[str, Any] | None) -> bool:
    """The operator saw the pod Ready: `instance` (as it just read it) becomes running in one conditional
    UPDATE and its timeline line, without reading the row again. Only from RUNNING_FROM with the billing
    clock already started by the container's start (POD_STARTED): anything else (a pod seen Ready at once,
    which starts billing too) goes through instance_observe. False, changing nothing, when the row has
    moved on since it was read (stopped, failed, observed by another worker) or is not in that case."""
    if instance.state not in RUNNING_FROM or instance.billing_since is None:
        return False
    now = timezone.now()
    fields: dict[str, Any] = {
        "state": State.RUNNING,
        "holds_compute": holds_compute_after(State.RUNNING, instance.holds_compute),
        "state_changed_at": now,
        "running_since": now,
        "updated_at": now,
    }
    if connection:
        fields["connection"] = connection
    changed = Instance.objects.filter(
        pk=instance.pk, state=instance.state, billing_since=instance.billing_since
    ).update(**fields)
    if not changed:
        return False
    before = instance.state
    for name, value in fields.items():
        setattr(instance, name, value)
    _event(
        instance,
        kind="observation",
        name=Observation.POD_READY.value,
        from_state=before,
        actor=None,
        at=now,
    )
    return True


@transaction.atomic
def instance_update_connection(*, instance_id: Any, connection: dict[str, Any]) -> bool:
    """Refresh a running instance's connection details (its pod was recreated elsewhere). True if changed."""
    instance = Instance.objects.select_for_update().filter(pk=instance_id, state=State.RUNNING).first()
    if instance is None or not connection or instance.connection == connection:
        return False
    before = instance.connection
    instance.connection = connection
    instance.save(update_fields=["connection", "updated_at"])
    _event(
        instance,
        kind="observation",
        name="connection_changed",
        from_state=instance.state,
        actor=None,
        message=f"{before.get('ssh_command', '')} -> {connection.get('ssh_command', '')}",
    )
    return True


@transaction.atomic
def instance_note_waiting(*, instance_id: Any, message: str) -> bool:
    """Say why a pending instance waits (its region has no cluster connection yet). Only a pending instance
    takes the note, and it leaves with the pending state (instance_observe). True if it changed."""
    instance = Instance.objects.select_for_update().filter(pk=instance_id, state=State.PENDING).first()
    if instance is None or instance.state_message == message[:500]:
        return False
    instance.state_message = message[:500]
    instance.save(update_fields=["state_message", "updated_at"])
    return True


def instances_reconcile_pending(*, region: Region) -> int:
    """Queue a reconcile (after commit) of every pending instance of a region that was just connected, so
    they start now instead of at the operator's next pass. Returns how many."""
    pending = list(Instance.objects.filter(region=region, state=State.PENDING).order_by("created_at"))
    for instance in pending:
        _queue_reconcile(instance)
    return len(pending)
