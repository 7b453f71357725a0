"""The operator process: one thread per region with a cluster, each leading its region or standing by.

    Operator.run()                      discovers regions (every discover_seconds), one RegionOperator each
      RegionOperator (thread)           competes for the region's advisory lock (leader.py), retrying
        while leading:
          store watches (threads)       stores.ClusterStores: pods, nodes, Services, namespaces and
                                        namespace objects, listed once and kept by watches
          pod watch (thread)            the pod store's watch -> Queued: newest event per instance
          pod workers (pod_workers)     PodHandler -> instance observations
          node watch (thread)           the node store's watch; node changes -> capacity recomputed
          Service watch (thread)        the Service store's watch; a Service stored -> its pod handled
                                        again (the SSH port of a pod Ready before its Service arrived)
          event watch (thread)          watcher.watch_forever + KubeEventHandler -> instance timeline
          change listener (threads)     LISTEN gpucloud_instance_changed -> reconcile at once (changes.py)
          resync loop (this thread)     every resync period, from the stores: reconcile every live
                                        instance (resync_workers at once) and volume (claims), GC,
                                        capacity; capacity also within a second of any pod change

A stop event ends everything: watches return at their next event or server-side timeout, the lock is
released, database connections are closed. See docs/operator.md.

Liveness: Operator.run() touches HEARTBEAT_FILE (apps/core/heartbeat.py) every heartbeat_seconds while
every region thread is alive and has gone round its loop (a retry as standby, a pass of the resync loop as
leader) within stall_seconds; the chart's probe restarts a process whose file goes stale. The database or
an apiserver being away does not stop either loop, so an outage alone never restarts the operator.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import close_old_connections, connection
from kubernetes import client

from apps.catalog.models import GpuType, Region
from apps.core import heartbeat
from apps.instances.models import Instance
from apps.instances.states import State
from apps.operator import (
    applied,
    capacity,
    capacity_nodes,
    gc,
    observed,
    stores,
    tenant_namespaces,
    workqueue,
)
from apps.operator.backoff import Backoff
from apps.operator.changes import ChangeListener
from apps.operator.client import REQUEST_TIMEOUT, api_client, has_cluster
from apps.operator.cluster import Cluster
from apps.operator.leader import RegionLock
from apps.operator.reconciler import load_instances, reconcile, reconcile_volume
from apps.operator.stores import ClusterStores
from apps.operator.watcher import (
    KubeEventHandler,
    PodHandler,
    Queued,
    describe,
    release_connection,
    watch_forever,
)
from apps.storage.models import Volume, VolumeState
from apps.tenants.models import Tenant, TenantStatus

logger = logging.getLogger(__name__)

# Instances the resync reads in one go (three queries per batch). One is checked unchanged only before the
# reconciler writes for it (reconciler.CheckedCluster), so a stop or start made meanwhile is never undone
# and a steady-state pass, which writes nothing, asks the database nothing per instance.
RESYNC_BATCH = 100
# How long a resync waits for the stores' first lists (a leader's first pass starts with its watches).
STORES_SYNC_SECONDS = 120.0


@dataclass(frozen=True)
class OperatorConfig:
    resync_seconds: float = 30.0
    # How often the operator looks for regions connected since it started (one query): a region connected
    # while it runs (`make run` connects the sandbox's once it is built) is driven within this.
    discover_seconds: float = 5.0
    lock_retry_seconds: float = 5.0
    # Server-side timeout of each watch request: the watch resumes after it, and a stop waits at most this.
    watch_timeout_seconds: int = 30
    watch_events: bool = True
    # For clusters shared by several control planes (test sandboxes): see gc.collect.
    gc_known_tenants_only: bool = True
    # Capacity is recomputed at most this often when pods change between resyncs, and never more often
    # than CAPACITY_DUTY of the time (a pass lists every pod in the cluster, which grows with the fleet).
    capacity_min_interval: float = 1.0
    # Threads that record pod events (each holds a database connection while leading).
    pod_workers: int = 4
    # Threads that reconcile instances as their changes commit (changes.py); 0 leaves it to the task.
    change_workers: int = 4
    # Instances a resync reconciles at once (a cold start's pod creations in flight). Every worker may hold
    # a database connection while it works: the process's pool must cover pool_needed() (the chart's does).
    resync_workers: int = 8
    # Liveness (module docstring): how often the heartbeat is touched, and how long a region thread may
    # take to go round its loop once (a full resync of 5,000 instances took 18 s in docs/benchmarks.md).
    heartbeat_seconds: float = heartbeat.INTERVAL_SECONDS
    stall_seconds: float = 600.0


# Threads of a led region that may hold a database connection besides its pod, change and resync workers:
# the resync loop and the event watch. (Store watches only queue; the leader lock and the change
# listener's LISTEN are connections of their own, outside the pool.)
OTHER_REGION_THREADS = 2


def pool_needed(config: OperatorConfig, regions: int) -> int:
    """Pooled connections the process's threads may hold at once while leading `regions` regions: the
    discovery loop's, and per region its workers' and other threads' (the chart sizes the operator's pool
    so, helm/gpucloud/templates/_database.tpl)."""
    per_region = config.pod_workers + config.change_workers + config.resync_workers + OTHER_REGION_THREADS
    return 1 + regions * per_region


def pool_max_size() -> int | None:
    """The process's DATABASE_POOL_MAX_SIZE (config/settings/database.py); None without the pool."""
    pool = (connection.settings_dict.get("OPTIONS") or {}).get("pool")
    return int(pool["max_size"]) if isinstance(pool, dict) else None


def _closing_db(target: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            target(*args, **kwargs)
        except Exception:
            logger.exception("operator thread crashed")
        finally:
            connection.close()

    return run


CAPACITY_DUTY = 0.1


def capacity_interval(minimum: float, last_pass_seconds: float) -> float:
    """Seconds until the next capacity pass between resyncs: `minimum`, or longer when passes are slow."""
    return max(minimum, last_pass_seconds / CAPACITY_DUTY)


def refresh_capacity(cluster: Cluster, region: Region, watched: ClusterStores | None = None) -> int:
    """`watched`: the leader's watch-fed stores (stores.py); without them, nodes and pods are listed now."""
    if watched is not None:
        nodes, pods = watched.nodes.items(), watched.pods.items()
    else:
        nodes = gc.list_json(cluster.core.list_node).get("items") or []
        pods = (
            gc.list_json(cluster.core.list_pod_for_all_namespaces, field_selector="spec.nodeName!=").get(
                "items"
            )
            or []
        )
    return _write_capacity(region, nodes, pods)


def _write_capacity(region: Region, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> int:
    pods = [pod for pod in pods if (pod.get("spec") or {}).get("nodeName")]  # scheduled ones hold requests
    held = capacity.held_instance_ids(region)
    pools = capacity.compute_pools(nodes, pods, exclude_instances=held)
    rows = capacity_nodes.node_rows(
        nodes,
        pods,
        instances=held,
        block_label=region.topology_block_label,
        rack_label=region.topology_rack_label,
    )
    capacity_nodes.write_nodes(region, rows)
    return capacity.write_pools(region, pools)


class RegionOperator(threading.Thread):
    def __init__(self, region_id: Any, slug: str, config: OperatorConfig, stop: threading.Event):
        super().__init__(name=f"operator-{slug}", daemon=True)
        self.region_id, self.slug, self.config, self.stop = region_id, slug, config, stop
        self.lock = RegionLock(region_id)
        self.leading = threading.Event()
        self.resyncs = 0  # completed resyncs while leading (for tests and the log)
        self.resync_failures = 0
        self._capacity_dirty = threading.Event()
        self.changes: ChangeListener | None = None  # while leading (tests wait for its LISTEN)
        self.went_round = time.monotonic()  # the last time either loop went round (liveness)
        self.stores: ClusterStores | None = None  # while leading
        self.namespaces_applied = 0  # tenants whose namespace objects the last resync applied (tests, log)

    def stalled(self, now: float | None = None) -> bool:
        """Dead, or has not gone round its loop for stall_seconds."""
        now = time.monotonic() if now is None else now
        return not self.is_alive() or now - self.went_round > self.config.stall_seconds

    def run(self) -> None:
        term_backoff = Backoff(base=1.0, cap=30.0)
        try:
            while not self.stop.is_set():
                self.went_round = time.monotonic()
                close_old_connections()
                try:
                    acquired = self.lock.try_acquire()
                except Exception as exc:
                    logger.warning("region %s: leader election failed: %s", self.slug, describe(exc))
                    acquired = False
                if not acquired:
                    jitter = random.uniform(0.8, 1.2)  # noqa: S311
                    self.stop.wait(self.config.lock_retry_seconds * jitter)
                    continue
                logger.info("region %s: leading", self.slug)
                self.leading.set()
                failed = False
                try:
                    self._lead()
                    term_backoff.reset()
                except Exception as exc:
                    # A region without a usable connection, or the database gone: back off, compete again.
                    logger.warning("region %s: leadership term ended: %s", self.slug, describe(exc))
                    failed = True
                finally:
                    self.leading.clear()
                    self.lock.release()
                    logger.info("region %s: released leadership", self.slug)
                if failed:
                    release_connection()
                    term_backoff.wait(self.stop)  # without the lock, so a standby may take over meanwhile
        finally:
            self.lock.release()
            connection.close()

    def _lead(self) -> None:
        region = Region.objects.get(pk=self.region_id)
        cluster = Cluster(api_client(region))
        term = threading.Event()
        self.stores = watched = ClusterStores(cluster, self.slug)
        pods = Queued(
            PodHandler(region.pk, cluster, on_change=self._capacity_dirty.set, lookup=lambda: self.stores),
            f"pods@{self.slug}",
            workers=self.config.pod_workers,
        )
        watchers = pods.threads(term, f"operator-{self.slug}-pod-worker")
        timeout = self.config.watch_timeout_seconds
        # One watch per store; the pod watch (every pod: capacity counts all) also feeds the PodHandler,
        # the node watch marks capacity dirty.
        handlers: dict[Any, Any] = {
            id(watched.pods): pods,
            id(watched.nodes): self._node_changed,
            id(watched.services): partial(_service_changed, watched, pods),
        }
        for store in watched.all():
            then = handlers.get(id(store))
            watchers.append(
                threading.Thread(
                    target=_closing_db(store.watch(term, timeout_seconds=timeout, then=then)),
                    name=f"operator-{store.what.replace('@', '-')}",
                    daemon=True,
                )
            )
        if self.config.watch_events:
            watchers.append(
                threading.Thread(
                    target=_closing_db(watch_forever),
                    args=(cluster.core.list_event_for_all_namespaces, KubeEventHandler(region.pk), term),
                    kwargs={
                        "what": f"events@{self.slug}",
                        "timeout_seconds": self.config.watch_timeout_seconds,
                        "field_selector": "involvedObject.kind=Pod",
                    },
                    name=f"operator-{self.slug}-events",
                    daemon=True,
                )
            )
        if self.config.change_workers:
            self.changes = ChangeListener(region.pk, workers=self.config.change_workers)
            watchers += self.changes.threads(term, f"operator-{self.slug}-changes")
        for thread in watchers:
            thread.start()
        try:
            self._resync_loop(region, cluster)
        finally:
            term.set()
            for thread in watchers:
                thread.join(timeout=self.config.watch_timeout_seconds + 20)
            self.stores = None

    def _node_changed(self, kind: str, node: dict[str, Any]) -> None:
        self._capacity_dirty.set()  # allocatable, cordons and removals change capacity

    def _resync_loop(self, region: Region, cluster: Cluster) -> None:
        backoff = Backoff(base=1.0, cap=max(1.0, self.config.resync_seconds))
        next_resync = 0.0
        last_capacity, capacity_gap = 0.0, self.config.capacity_min_interval
        while not self.stop.is_set():
            self.went_round = time.monotonic()
            if not self.lock.still_held():
                return
            close_old_connections()
            now = time.monotonic()
            try:
                if now >= next_resync:
                    self.resync(region, cluster)
                    self.resyncs += 1
                    last_capacity = time.monotonic()
                    backoff.reset()
                    next_resync = time.monotonic() + self.config.resync_seconds
                elif self._capacity_dirty.is_set() and now - last_capacity >= capacity_gap:
                    self._capacity_dirty.clear()
                    refresh_capacity(cluster, region, self.stores)
                    last_capacity = time.monotonic()
                    capacity_gap = capacity_interval(self.config.capacity_min_interval, last_capacity - now)
            except Exception as exc:
                self.resync_failures += 1
                delay = backoff.next_delay()
                logger.warning(
                    "region %s: resync failed (%s); again in %.1fs", self.slug, describe(exc), delay
                )
                next_resync = time.monotonic() + delay
            release_connection()
            self.stop.wait(0.5)

    def resync(self, region: Region, cluster: Cluster) -> None:
        """Reconcile every live instance, collect garbage, recompute capacity: from the stores the watches
        keep (stores.py), or, outside a leadership term (the benchmarks), from one list of each kind."""
        client.VersionApi(cluster.api).get_code(_request_timeout=REQUEST_TIMEOUT)  # fail fast when down
        watched = self.stores or stores.polled(cluster, self.slug)
        if not watched.wait_synced(STORES_SYNC_SECONDS):
            raise RuntimeError("the cluster's stores have not listed yet")
        self._capacity_dirty.clear()
        live = list(
            Instance.objects.filter(region_id=region.pk)
            .exclude(state=State.TERMINATED)
            .order_by("created_at")
            .values_list("pk", "tenant_id")
        )
        ids = [pk for pk, _ in live]
        # One snapshot of each store for the whole pass (a polled store lists once, not per reader).
        pods, nodes = watched.pods.snapshot(), watched.nodes.snapshot()
        seen = observed.Observed(
            pods={ref: pod for ref, pod in pods.items() if stores.managed(pod)},
            services=watched.services.snapshot(),
            nodes={name: node for (_, name), node in nodes.items()},
        )
        # What the list shows is in place (as stamped); what it lacks is applied again below.
        applied.cache.learn(cluster.cluster_id, "Service", seen.services)
        failed = self._refresh_namespaces(region, cluster, {tenant_id for _, tenant_id in live}, watched)
        failures: list[Any] = []

        def batches() -> Iterator[Instance]:
            for start in range(0, len(ids), RESYNC_BATCH):
                # A resync that keeps going through its batches is alive, however long the whole pass takes
                # (a cold start of 5,000 pods took about ten minutes in docs/benchmarks.md).
                self.went_round = time.monotonic()
                yield from load_instances(ids[start : start + RESYNC_BATCH])

        def one(instance: Instance) -> None:
            try:
                reconcile(instance.pk, seen, loaded=instance)
            except Exception as exc:
                failures.append(instance.pk)
                logger.warning("region %s: reconcile %s failed: %s", self.slug, instance.pk, describe(exc))
            finally:
                release_connection()  # pooled: back to the pool between instances, for the pod workers

        # Instances `resync_workers` at a time (a cold start creates that many pods at once); a deposed
        # leader stops between instances, before the server can hand its lock to a standby.
        workqueue.run_all(
            batches(),
            one,
            workers=self.config.resync_workers,
            name=f"operator-{self.slug}-resync",
            should_stop=lambda: self.stop.is_set() or not self.lock.lease_valid(),
            on_exit=lambda: connection.close(),  # each thread's own connection, at its end
        )
        if self.stop.is_set() or not self.lock.lease_valid():
            return
        failed += len(failures)
        failed += self._resync_volumes(region)
        gc_seen = gc.Seen(
            pods=list(seen.pods.values()),
            services=list(seen.services.values()),
            namespaces=list(watched.namespaces.snapshot().values()),
        )
        gc.collect(cluster, region, known_tenants_only=self.config.gc_known_tenants_only, seen=gc_seen)
        _write_capacity(region, list(nodes.values()), list(pods.values()))
        logger.debug("region %s: resynced %d instances (%d failed)", self.slug, len(ids), failed)

    def _refresh_namespaces(
        self, region: Region, cluster: Cluster, tenant_ids: set[Any], watched: ClusterStores
    ) -> int:
        """The namespace objects of every tenant with live instances here, once per tenant: applied when one
        is missing or differs from what is due (tenant_namespaces.py), or, without stores of those kinds,
        whatever this process remembers. Returns the failures."""
        failed = 0
        stamps = watched.namespace_objects_snapshot() if watched.knows_namespace_objects() else None
        gpu_types = list(GpuType.objects.all())
        tenants = (
            Tenant.objects.filter(pk__in=tenant_ids)
            .exclude(status=TenantStatus.CLOSED)
            .select_related("quota")  # with the GPU quotas: a few queries per pass, not one per tenant
            .prefetch_related("gpu_quotas")
        )
        self.namespaces_applied = 0
        for tenant in tenants.order_by("pk"):
            if self.stop.is_set():
                break
            try:
                quota = getattr(tenant, "quota", None)  # None: none yet, due() makes the default one
                objects = tenant_namespaces.due(tenant, region, gpu_types, quota=quota)
                if stamps is not None and tenant_namespaces.current(objects, stamps):
                    continue
                tenant_namespaces.ensure(cluster, tenant, region, refresh=True, objects=objects)
                self.namespaces_applied += 1
            except Exception as exc:
                failed += 1
                logger.warning("region %s: namespace of %s failed: %s", self.slug, tenant.slug, describe(exc))
        return failed

    def _resync_volumes(self, region: Region) -> int:
        """Reconcile every volume of the region that is not deleted (their claims); returns the failures."""
        failed = 0
        ids = list(
            Volume.objects.filter(region_id=region.pk)
            .exclude(state=VolumeState.DELETED)
            .order_by("created_at")
            .values_list("pk", flat=True)
        )
        for volume_id in ids:
            if self.stop.is_set():
                break
            try:
                reconcile_volume(volume_id)
            except Exception as exc:
                failed += 1
                logger.warning("region %s: volume %s failed: %s", self.slug, volume_id, describe(exc))
        return failed


def _service_changed(watched: ClusterStores, pods: Queued, kind: str, service: dict[str, Any]) -> None:
    """A Service that arrives after its pod was seen Ready (a pod can be Ready before the Service sent
    alongside it is stored) gives the instance its SSH port now, not at the next resync: its pod is handled
    again (same name, same queue key, so never beside one of its own events), which records the
    connection only if it changed."""
    if kind == "DELETED":
        return
    meta = service.get("metadata") or {}
    pod = watched.pods.get(meta.get("namespace") or "", meta.get("name") or "")
    if pod is not None:
        pods.put("MODIFIED", pod, measured=False)


class Operator:
    """All regions (or the named ones) of this deployment. `run()` blocks until `stop` is set."""

    def __init__(self, config: OperatorConfig | None = None, regions: Iterable[str] | None = None):
        self.config = config or OperatorConfig()
        self.region_slugs = set(regions or [])
        self.stop = threading.Event()
        self.threads: dict[Any, RegionOperator] = {}
        self._thread: threading.Thread | None = None

    def discover(self) -> None:
        close_old_connections()
        regions = Region.objects.all()
        if self.region_slugs:
            regions = regions.filter(slug__in=self.region_slugs)
        try:
            for region in regions:
                if region.pk in self.threads or not has_cluster(region):
                    continue
                thread = RegionOperator(region.pk, region.slug, self.config, self.stop)
                self.threads[region.pk] = thread
                thread.start()
                logger.info("region %s: operator thread started", region.slug)
                self._check_pool(len(self.threads))
        finally:
            release_connection()  # until the next discovery

    def _check_pool(self, regions: int) -> None:
        """Say so when this process's pool is smaller than its threads may hold leading every region it
        drives: they would wait for a connection, and give up after DATABASE_POOL_TIMEOUT."""
        size, needed = pool_max_size(), pool_needed(self.config, regions)
        if size is not None and size < needed:
            logger.warning(
                "operator: DATABASE_POOL_MAX_SIZE is %d, below the %d connections its threads may hold "
                "leading %d regions (1 + regions x (pod + change + resync workers + %d)); raise it or "
                "lower the workers",
                size,
                needed,
                regions,
                OTHER_REGION_THREADS,
            )

    def run(self) -> None:
        backoff = Backoff(base=1.0, cap=30.0)
        next_discovery = 0.0
        try:
            while not self.stop.is_set():
                self.touch_heartbeat()
                if time.monotonic() >= next_discovery:
                    try:
                        self.discover()
                        backoff.reset()
                        next_discovery = time.monotonic() + min(
                            self.config.discover_seconds, self.config.resync_seconds
                        )
                    except Exception as exc:
                        logger.warning("operator: discovering regions failed: %s", describe(exc))
                        next_discovery = time.monotonic() + backoff.next_delay()
                wait = min(self.config.heartbeat_seconds, next_discovery - time.monotonic())
                self.stop.wait(max(0.0, wait))
        finally:
            self.stop.set()
            for thread in self.threads.values():
                thread.join(timeout=self.config.watch_timeout_seconds + 30)
            connection.close()

    def touch_heartbeat(self) -> bool:
        """Touch the heartbeat unless a region thread died or stalled (logged); True when touched."""
        stalled = sorted(t.slug for t in self.threads.values() if t.stalled())
        if stalled:
            logger.error(
                "operator: region threads dead or stalled: %s; heartbeat withheld", ", ".join(stalled)
            )
            return False
        heartbeat.beat()
        return True

    # In-process use (tests, embedding): run in a background thread.
    def start(self) -> Operator:
        self._thread = threading.Thread(target=self.run, name="operator", daemon=True)
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 60.0) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def leading(self) -> set[str]:
        return {t.slug for t in self.threads.values() if t.leading.is_set()}
