"""Instance and operator metrics (docs/operations.md "Metrics").

`InstanceCollector` reads the database when scraped (web's /metrics): live instances by state, region and
type; instances stuck in a transitional state; GPUs held and GPUs in each region's pools. The histograms
are observed by whichever process runs the code: the operator (watch, resync) and the worker (reconcile
tasks after launches and actions).
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apps.core import request_context

RECONCILE_SECONDS = Histogram(
    "gpucloud_reconcile_duration_seconds",
    "One reconcile pass of an instance or a volume against its cluster, by outcome (ok, error).",
    ["kind", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
WATCH_LAG_SECONDS = Histogram(
    "gpucloud_operator_watch_lag_seconds",
    "From a watched object's last change (as the apiserver stamped it, to the second) to the operator "
    "handling the event, by resource (pods, nodes, events) and region.",
    ["resource", "region"],
    buckets=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
)

F = TypeVar("F", bound=Callable[..., Any])


def timed_reconcile(kind: str) -> Callable[[F], F]:
    """Time each pass and, for instances, put the instance id on every log line it writes."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(object_id: Any, *args: Any, **kwargs: Any) -> Any:
            started, outcome = time.perf_counter(), "error"
            bound = request_context.bind(instance_id=str(object_id)) if kind == "instance" else nullcontext()
            try:
                with bound:
                    result = fn(object_id, *args, **kwargs)
                outcome = "ok"
                return result
            finally:
                RECONCILE_SECONDS.labels(kind=kind, outcome=outcome).observe(time.perf_counter() - started)

        return wrapper  # type: ignore[return-value]

    return decorate


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def last_change(obj: dict[str, Any]) -> float | None:
    """When the object last changed: its newest managedFields entry (every writer stamps one), or for an
    Event its own times. None when it carries none of them."""
    meta = obj.get("metadata") or {}
    values: list[Any] = [entry.get("time") for entry in meta.get("managedFields") or []]
    values += [meta.get("creationTimestamp"), obj.get("lastTimestamp"), obj.get("eventTime")]
    values.append((obj.get("series") or {}).get("lastObservedTime"))
    stamps = [t for t in map(_timestamp, values) if t is not None]
    return max(stamps) if stamps else None


def observe_watch_lag(what: str, kind: str, obj: dict[str, Any], now: float | None = None) -> None:
    """`what` is the watch's name, "<resource>@<region>". Only additions and changes carry the time of the
    change; a deletion does not, so it is not measured."""
    if kind not in ("ADDED", "MODIFIED"):
        return
    changed = last_change(obj)
    if changed is None:
        return
    resource, _, region = what.partition("@")
    lag = max(0.0, (time.time() if now is None else now) - changed)  # clocks may differ by a little
    WATCH_LAG_SECONDS.labels(resource=resource, region=region).observe(lag)


def stuck_gauges(now: datetime | None = None) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    """Instances in a transitional state (pending, provisioning, starting, stopping, terminating) for longer
    than INSTANCE_STUCK_AFTER_SECONDS, by state and region, and how long the oldest has been there: what a
    wedged operator, an unreachable cluster or a pod that never turns Ready looks like. One query."""
    from apps.instances.models import Instance
    from apps.instances.states import TRANSITIONAL

    now = now or timezone.now()
    stuck = GaugeMetricFamily(
        "gpucloud_instances_stuck",
        "Instances in a transitional state for longer than INSTANCE_STUCK_AFTER_SECONDS, by state and "
        "region.",
        labels=["state", "region"],
    )
    oldest = GaugeMetricFamily(
        "gpucloud_instances_transition_oldest_seconds",
        "Seconds the longest-waiting instance has been in each transitional state, by state and region.",
        labels=["state", "region"],
    )
    cutoff = now - timedelta(seconds=int(settings.INSTANCE_STUCK_AFTER_SECONDS))
    rows = (
        Instance.objects.filter(state__in=TRANSITIONAL)
        .values("state", "region__slug")
        .annotate(stuck=Count("pk", filter=Q(state_changed_at__lte=cutoff)), since=Min("state_changed_at"))
        .order_by("state", "region__slug")
    )
    for row in rows:
        labels = [row["state"], row["region__slug"]]
        stuck.add_metric(labels, float(row["stuck"]))
        oldest.add_metric(labels, max(0.0, (now - row["since"]).total_seconds()))
    return stuck, oldest


class InstanceCollector(Collector):
    """Three aggregated queries per scrape: instances (with the GPUs they hold), stuck instances and GPU
    pools."""

    def collect(self) -> Iterator[Metric]:
        from apps.catalog.models import RegionCapacity
        from apps.instances.models import Instance
        from apps.instances.states import State

        instances = GaugeMetricFamily(
            "gpucloud_instances",
            "Instances that are not terminated, by state, region and instance type.",
            labels=["state", "region", "instance_type"],
        )
        allocated = GaugeMetricFamily(
            "gpucloud_gpus_allocated",
            "GPUs held by instances (pending to stopping), by region and GPU type.",
            labels=["region", "gpu_type"],
        )
        capacity = GaugeMetricFamily(
            "gpucloud_gpus_capacity",
            "GPUs in each region's pools, as the operator last observed them (or staff declared).",
            labels=["region", "gpu_type"],
        )
        rows = (
            Instance.objects.exclude(state=State.TERMINATED)
            .values("state", "region__slug", "instance_type__slug", "gpu_type__slug")
            .annotate(n=Count("pk"), gpus=Sum("gpu_count", filter=Q(holds_compute=True)))
            .order_by()
        )
        gpus: dict[tuple[str, str], int] = defaultdict(int)
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for row in rows:
            counts[(row["state"], row["region__slug"], row["instance_type__slug"])] += row["n"]
            if row["gpu_type__slug"] and row["gpus"]:
                gpus[(row["region__slug"], row["gpu_type__slug"])] += row["gpus"]
        for (state, region, itype), n in sorted(counts.items()):
            instances.add_metric([state, region, itype], float(n))
        pools = RegionCapacity.objects.filter(gpu_type__isnull=False).values_list(
            "region__slug", "gpu_type__slug", "gpus"
        )
        for region, gpu_type, total in pools.order_by("region__slug", "gpu_type__slug"):
            capacity.add_metric([region, gpu_type], float(total))
            gpus.setdefault((region, gpu_type), 0)  # an idle pool shows 0 allocated, not no series
        for (pool_region, pool_type), held in sorted(gpus.items()):
            allocated.add_metric([pool_region, pool_type], float(held))
        yield instances
        yield from stuck_gauges()
        yield allocated
        yield capacity
