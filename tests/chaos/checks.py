"""What every drill asserts once the churn is over: the system converged, the cluster holds exactly the
pods the database explains, what the API acknowledged happened exactly once, and the ledger bills exactly
the observed running time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import close_old_connections
from django.utils import timezone
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.billing import metering
from apps.billing.models import UsageRecord
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import State
from apps.operator import manifests, names, observe
from apps.tenants.models import Tenant
from tests.chaos.churn import Churn
from tests.chaos.stack import OPERATOR_RESYNC_SECONDS, Stack
from tests.support.processes import wait_for

TRANSITIONAL = (State.PENDING, State.PROVISIONING, State.STARTING, State.STOPPING, State.TERMINATING)
# The longest an instance may legitimately stay in a transitional state, from apps/instances: a pod may sit
# unschedulable or pulling its image until the observer gives up on it, then be given its termination grace;
# the operator notices within a resync or two. GRACE is for a loaded 2-core machine, not for the system.
GRACE = 60
SETTLE_BOUND = (
    max(observe.UNSCHEDULABLE_TIMEOUT, observe.IMAGE_PULL_GRACE).total_seconds()
    + manifests.TERMINATION_GRACE_SECONDS
    + 2 * OPERATOR_RESYNC_SECONDS
    + GRACE
)
SETTLED_FOR = {
    "running": ("running", "failed"),
    "stopped": ("stopped", "failed"),
    "terminated": ("terminated",),
}


def instances_of(tenants: Iterable[Tenant]) -> list[Instance]:
    close_old_connections()
    return list(Instance.objects.filter(tenant__in=list(tenants)).select_related("region", "instance_type"))


def unsettled(tenants: Iterable[Tenant]) -> list[str]:
    return [
        f"{i.name} {i.region.slug} state={i.state} desired={i.desired_state}"
        for i in instances_of(tenants)
        if i.state in TRANSITIONAL or i.state not in SETTLED_FOR[i.desired_state]
    ]


def wait_settled(tenants: list[Tenant], stack: Stack, *, bound: float = SETTLE_BOUND) -> None:
    """Every instance reaches the state its desired state calls for, within the bound above."""
    try:
        wait_for(lambda: not unsettled(tenants), what="every instance to settle", timeout=bound)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nunsettled: {unsettled(tenants)}\n{stack.logs()}") from None


def pods_of(kube: dict[str, client.ApiClient], tenants: Iterable[Tenant]) -> dict[tuple[str, str], str]:
    """(region, instance id) -> pod phase, for every gpucloud pod in the tenants' namespaces."""
    found = {}
    for region, api in kube.items():
        for tenant in tenants:
            namespace = names.namespace_name(tenant.pk, tenant.slug)
            try:
                pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            for pod in pods:
                instance_id = (pod.metadata.labels or {}).get(
                    names.INSTANCE_LABEL, f"unlabelled:{pod.metadata.name}"
                )
                found[(region, instance_id)] = pod.status.phase
    return found


def assert_no_orphans(kube: dict[str, client.ApiClient], tenants: list[Tenant]) -> None:
    """Once settled, the pods are exactly those of the running instances: none of a stopped, failed or
    terminated instance, none that no instance explains, and none missing."""
    pods = pods_of(kube, tenants)
    running = {(i.region.slug, str(i.pk)) for i in instances_of(tenants) if i.state == State.RUNNING}
    assert set(pods) == running, (
        f"pods without a running instance: {sorted(set(pods) - running)}; "
        f"running instances without a pod: {sorted(running - set(pods))}"
    )


def assert_acknowledged_once(churns: list[Churn]) -> None:
    """Each acknowledged launch made one instance (its key, its name); each acknowledged action is one
    action event on its instance; the last acknowledged action decides the desired state."""
    assert not [o for c in churns for o in c.unknown], "requests that never got an answer"
    for churn in churns:
        tenant = churn.api.actor.tenant
        for key, outcome in churn.launches.items():
            made = Instance.objects.filter(tenant=tenant, name=f"c-{key[:8]}")
            assert [str(i.pk) for i in made] == [outcome.body["id"]], f"launch {key}: {list(made)}"
        acknowledged: Counter[tuple[str, str]] = Counter()
        last: dict[str, str] = {}
        for instance_id, action, _outcome in churn.acknowledged_actions():
            acknowledged[(instance_id, action)] += 1
            last[instance_id] = action
        recorded = Counter(
            (str(instance_id), name)
            for instance_id, name in InstanceEvent.objects.filter(instance__tenant=tenant, kind="action")
            .exclude(name="launch")
            .values_list("instance_id", "name")
        )
        assert recorded == acknowledged, f"action events {recorded} != acknowledged {acknowledged}"
        desired = {"stop": "stopped", "terminate": "terminated", "start": "running", "restart": "running"}
        for instance_id, action in last.items():
            assert Instance.objects.get(pk=instance_id).desired_state == desired[action], (
                instance_id,
                action,
            )
        for outcome in churn.launches.values():
            if outcome.body["id"] not in last:
                assert Instance.objects.get(pk=outcome.body["id"]).desired_state == "running"


def exact_intervals(instance: Instance) -> list[tuple[datetime, datetime]]:
    """The observed billed intervals, to the microsecond: from each line of the timeline that starts billing
    (its pod's container started, Ready or not) to the next that ends it (stop, restart, terminate, failure),
    in the order the lines were written (the instance is terminated by now, so every interval has ended)."""
    spans, started = [], None
    lines = InstanceEvent.objects.filter(instance=instance, kind__in=("action", "observation")).order_by("id")
    for event in lines:
        if started is None and event.billable:
            started = event.created_at
        elif started is not None and not event.billable:
            spans.append((started, event.created_at))
            started = None
    assert started is None, f"{instance} is still billed"
    return spans


def assert_ledger_matches_billed_time(tenants: list[Tenant]) -> dict[str, Any]:
    """Meter every (terminated) instance, then compare its usage rows with its billed intervals: each
    interval billed within a second, nothing billed outside them. Returns figures for the report."""
    now = timezone.now()
    billed_total, observed_total, intervals = 0, 0.0, 0
    for instance in instances_of(tenants):
        assert instance.state == State.TERMINATED, instance
        metering.meter_instance(instance, now=now)
        rows = list(UsageRecord.objects.filter(resource_id=str(instance.pk), kind="usage"))
        spans = exact_intervals(instance)
        claimed = 0
        for start, end in spans:
            lower, upper = start.replace(microsecond=0), end
            billed = sum(
                r.quantity_seconds for r in rows if r.period.lower >= lower and r.period.upper <= upper
            )
            observed = (end - start).total_seconds()
            assert abs(billed - observed) < 1, (
                f"{instance}: billed {billed}s for {observed:.3f}s ({start}..{end})"
            )
            claimed += billed
            observed_total += observed
        billed_here = sum(r.quantity_seconds for r in rows)
        assert billed_here == claimed, f"{instance}: {billed_here - claimed}s billed outside its billed time"
        # The instance's own clock (services._stop_billing) is a second, independent account of the same time.
        clock = sum((end - start).total_seconds() for start, end in spans)
        assert abs(instance.accrued_billed_seconds - clock) <= len(spans), (
            f"{instance}: its clock says {instance.accrued_billed_seconds}s, its timeline {clock:.3f}s:\n"
            + "\n".join(
                f"  {e.created_at:%H:%M:%S.%f} {e.kind} {e.name} {e.from_state}->{e.to_state} "
                f"billable={e.billable} {e.actor_label}"
                for e in InstanceEvent.objects.filter(instance=instance).order_by("created_at", "id")
            )
        )
        billed_total += billed_here
        intervals += len(spans)
    return {
        "billed_seconds": billed_total,
        "observed_seconds": round(observed_total, 3),
        "intervals": intervals,
    }
