"""Operator scale: N pods (default 5,000) on N/10 simulated nodes, in a dedicated cluster started here (no
other sandbox instance is loaded): time until a freshly started operator has every instance running (cold
start: it creates every pod, Secret and Service), watch-to-database lag p50/p99 while those pods turn
Running, a full resync of the steady state (the second in the process that times it: the first learns
what is applied; split into our code, the apiserver's requests and the database's queries, with the
queries it repeats most), and the operator's memory. `run_curve` repeats it at several sizes (CURVE_SIZES:
a full `make bench`, or `make bench BENCH=operator_scale SIZES=1000,5000,20000`) so that growth is visible.

Baselines, same run and cluster: the cold start against the same objects created raw (the tenants'
namespace objects, then per instance its Secret, Service and pod, from apps/operator/manifests) with the
operator's creation concurrency, until a watch sees every pod Running; the resync against one LIST of each
kind it reads (pods, Services, Secrets, nodes) plus the instance ids query; the memory against the same
operator idle on an empty database. The lag is measured against a watch of our own (kube.PodWatch: resumes
from its resourceVersion with bookmarks, raw JSON): the moment it sees a pod Running, to the row the operator
writes (same clock). A negative lag (the operator's own watch was first) is reported as measured.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bench import common
from bench.common import Progress, ratio, summary_ms

DEFAULT_N = 5000
CURVE_SIZES = (1000, 5000, 20000)

PODS_PER_NODE = 10
INSTANCES_PER_TENANT = 100
TIMEOUT = 3600.0
GOAL_RESYNC_RATIO = 1.5
GOAL_COLD_RATIO = 1.5
GOAL_LAG_P99_MS = 100


def operator_create_concurrency() -> int:
    """How many creations the operator's cold start runs at once: its resync's workers (a cold start is a
    resync that finds no pods), else a field named like `*concurren*` or `create_workers`, else 1."""
    from apps.operator.operator_loop import OperatorConfig

    config = OperatorConfig()
    for field in dataclasses.fields(config):
        if field.name == "resync_workers" or "concurren" in field.name or field.name == "create_workers":
            value = getattr(config, field.name)
            if isinstance(value, int) and value > 0:
                return value
    return 1


STATEMENT_PREFIX = 90
_DB_HOOK = "_execute_with_wrappers"  # Django's private method under execute() and executemany()


@contextmanager
def time_split() -> Iterator[dict[str, float]]:
    """Time spent in Kubernetes requests and in database queries while the block runs (summed over
    threads: with concurrent requests the sum can exceed the wall time)."""
    from django.db.backends import utils
    from kubernetes.client import rest

    spent: dict[str, Any] = {"kube_seconds": 0.0, "kube_requests": 0, "db_seconds": 0.0, "db_queries": 0}
    statements: Counter[str] = Counter()  # by their first words: which queries a pass repeats
    lock = threading.Lock()
    request, execute = rest.RESTClientObject.request, getattr(utils.CursorWrapper, _DB_HOOK)

    def timed_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return request(self, *args, **kwargs)
        finally:
            with lock:
                spent["kube_seconds"] += time.perf_counter() - t0
                spent["kube_requests"] += 1

    def timed_execute(self: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(self, sql, *args, **kwargs)
        finally:
            with lock:
                spent["db_seconds"] += time.perf_counter() - t0
                spent["db_queries"] += 1
                statements[str(sql)[:STATEMENT_PREFIX]] += 1

    rest.RESTClientObject.request = timed_request  # type: ignore[method-assign]
    setattr(utils.CursorWrapper, _DB_HOOK, timed_execute)
    try:
        yield spent
    finally:
        rest.RESTClientObject.request = request  # type: ignore[method-assign]
        setattr(utils.CursorWrapper, _DB_HOOK, execute)
        spent["db_top"] = dict(statements.most_common(5))


def _raw_cold_start(
    api: Any, tenants: Sequence[Any], region: Any, concurrency: int, progress: Progress
) -> dict[str, Any]:
    """The cold start's floor: every tenant's namespace objects, then each instance's Secret, Service and
    pod created directly, `concurrency` instances at a time, until a watch sees every pod Running. The
    objects are built before the clock starts; the namespaces are deleted afterwards (untimed)."""
    from kubernetes import client

    from apps.instances.models import Instance
    from apps.operator.reconciler import load_instances
    from bench import kube

    core = client.CoreV1Api(api)
    by_tenant: dict[Any, str] = {}
    objects: list[list[dict[str, Any]]] = []
    for who in tenants:
        namespace = kube.baseline_namespace(api, who.tenant, region, prefix="bench-raw")
        by_tenant[who.tenant.pk] = namespace
    ids = list(Instance.objects.filter(region=region).order_by("created_at").values_list("pk", flat=True))
    for start in range(0, len(ids), 500):
        for instance in load_instances(ids[start : start + 500]):
            objects.append(
                kube.baseline_objects(instance, by_tenant[instance.tenant_id], f"raw-{len(objects)}")
            )
    watch = kube.PodWatch(api, label_selector=f"{kube.BASELINE_LABEL}=true").start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda o: kube.create_instance_objects(core, o), objects))
    created = time.perf_counter() - t0
    watch.wait_all_running(len(objects), TIMEOUT)
    seconds = time.perf_counter() - t0
    watch.stop()
    progress(
        f"raw cold start: {len(objects)} x (Secret, Service, pod), {concurrency} at once: {seconds:.1f}s"
    )
    for namespace in by_tenant.values():
        kube.drop_namespace(api, namespace)
    deadline = time.monotonic() + TIMEOUT
    while core.list_pod_for_all_namespaces(label_selector=f"{kube.BASELINE_LABEL}=true", limit=1).items:
        if time.monotonic() > deadline:
            raise RuntimeError("the raw cold start's pods were never deleted")
        time.sleep(1)
    return {"seconds": round(seconds, 2), "created_seconds": round(created, 2), "pods": len(objects)}


def watch_lags(recorded: Iterable[Mapping[str, Any]], running: dict[str, float]) -> list[float]:
    """Seconds from our watch's first sighting of Running (`running`: instance id -> epoch seconds) to the
    operator's running row (`recorded`: instance_id, at), for every instance both saw. Not clamped: negative
    when the operator's own watch saw it first and its row was written before ours was read."""
    return [
        row["at"].timestamp() - running[str(row["instance_id"])]
        for row in recorded
        if str(row["instance_id"]) in running
    ]


def _bare_lists(api: Any, region: Any) -> dict[str, Any]:
    """One LIST of each kind the resync reads (raw JSON, in the operator's pages) and the ids query."""
    from kubernetes import client

    from apps.instances.models import Instance
    from apps.operator import gc, names

    core = client.CoreV1Api(api)
    managed = names.managed_selector()
    out: dict[str, Any] = {}
    t_all = time.perf_counter()
    for kind, fn, kwargs in (
        ("pods", core.list_pod_for_all_namespaces, {"label_selector": managed}),
        ("services", core.list_service_for_all_namespaces, {"label_selector": managed}),
        ("secrets", core.list_secret_for_all_namespaces, {"label_selector": managed}),
        ("nodes", core.list_node, {}),
    ):
        t0 = time.perf_counter()
        out[f"{kind}_count"] = len(gc.list_json(fn, **kwargs)["items"])
        out[f"{kind}_seconds"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    list(Instance.objects.filter(region=region).exclude(state="terminated").values_list("pk", flat=True))
    out["ids_query_seconds"] = round(time.perf_counter() - t0, 3)
    out["seconds"] = round(time.perf_counter() - t_all, 3)
    return out


def run(n: int, progress: Progress, *, concurrency: int | None = None) -> dict[str, Any]:
    from django.db.models import Min

    from apps.catalog.models import InstanceType, Region
    from apps.instances.models import Instance, InstanceEvent
    from apps.operator import names
    from apps.operator.client import api_client as region_client
    from apps.operator.cluster import Cluster
    from apps.operator.operator_loop import OperatorConfig, RegionOperator
    from bench import db, kube, seed
    from bench.stack import Stack, rss_kib, wait_operator_leads
    from tests.support.processes import wait_for

    concurrency = concurrency or operator_create_concurrency()
    nodes = max(1, n // PODS_PER_NODE)
    figures: dict[str, Any] = {"pods": n, "nodes": nodes, "create_concurrency": concurrency}
    with kube.dedicated_cluster("scale", cpu_nodes=nodes, progress=progress) as (kubeconfig, fleet):
        db.reset(progress)
        seed.catalog()
        seed.catalog(fleet)
        region = seed.connect_region(kube.BENCH_REGION, kubeconfig)
        api = kube.api_client(kubeconfig)
        figures["scheduler_client"] = kube.scheduler_client_qps(kubeconfig.parent.parent, kube.BENCH_REGION)

        # Baseline memory: the operator leading the region with nothing to do.
        # Its time from start to leading is the operator's startup (imports, connections, the lease), which
        # the cold start below also pays.
        with Stack("operator_idle") as stack:
            since = common.now_utc()
            t0 = time.perf_counter()
            idle = stack.operator(kube.BENCH_REGION, resync_seconds=86400)
            wait_operator_leads(region, since, stack)
            figures["operator_startup_seconds"] = round(time.perf_counter() - t0, 1)
            time.sleep(3)
            idle_rss = rss_kib(idle.pid)
        progress(f"idle operator: {idle_rss['VmRSS'] // 1024} MiB resident")

        itype = InstanceType.objects.get(slug="cpu-4x")
        tenants = [seed.tenant(f"bench-scale-{i}") for i in range(max(1, n // INSTANCES_PER_TENANT))]
        rows = []
        for i, who in enumerate(tenants):
            last = n - INSTANCES_PER_TENANT * (len(tenants) - 1)
            count = INSTANCES_PER_TENANT if i < len(tenants) - 1 else last
            rows.append(
                seed.instance_rows(
                    tenant=who.tenant,
                    count=count,
                    region=region,
                    instance_type=itype,
                    created_by=who.user,
                    states=("pending",),
                    start=i * INSTANCES_PER_TENANT,
                )
            )
        seed.copy_rows(Instance, (row for part in rows for row in part))
        db.analyze()
        progress(f"{n} pending instances in {len(tenants)} tenants")

        raw = _raw_cold_start(api, tenants, region, concurrency, progress)
        figures["raw_cold_start"] = raw

        watch = kube.PodWatch(api, label_selector=names.managed_selector(), clock=time.time)
        watch.key_label = names.INSTANCE_LABEL
        watch.start()
        peak_rss = 0
        with Stack("operator_scale") as stack:
            t0 = time.perf_counter()
            operator = stack.operator(kube.BENCH_REGION, resync_seconds=86400)
            last_tenth = -1
            deadline = time.monotonic() + TIMEOUT
            while (running := Instance.objects.filter(region=region, state="running").count()) < n:
                peak_rss = max(peak_rss, rss_kib(operator.pid).get("VmRSS", 0))
                if running // max(1, n // 10) != last_tenth:
                    last_tenth = running // max(1, n // 10)
                    progress(f"running: {running}/{n} (operator {peak_rss // 1024} MiB)")
                if time.monotonic() > deadline or not operator.alive():
                    raise RuntimeError(
                        f"only {running}/{n} running; operator log:\n{operator.output()[-3000:]}"
                    )
                time.sleep(0.2)
            cold = time.perf_counter() - t0
            progress(f"all {n} running after {cold:.1f}s (raw: {raw['seconds']}s)")
            time.sleep(5)  # settle: events and capacity passes after the wave
            steady = rss_kib(operator.pid)
            figures["operator_rss_mib"] = {
                "idle": round(idle_rss["VmRSS"] / 1024, 1),
                "steady": round(steady["VmRSS"] / 1024, 1),
                "peak": round(max(steady["VmHWM"], peak_rss) / 1024, 1),
            }
        watch.stop()
        figures["watch_reconnects"] = watch.reconnects

        # Watch-to-database lag: our watch's first sighting of Running -> the operator's "running" row. Not
        # clamped: negative when the operator's watch saw it first and wrote before ours was read.
        recorded = (
            InstanceEvent.objects.filter(instance__region=region, to_state="running")
            .exclude(from_state="running")
            .values("instance_id")
            .annotate(at=Min("created_at"))
        )
        lags = watch_lags(recorded, watch.running)
        figures["cold_start_seconds"] = round(cold, 1)
        figures["watch_to_db_lag"] = summary_ms(lags) | {
            "samples": len(lags),
            "negative": sum(1 for lag in lags if lag < 0),
            "min_ms": round(min(lags) * 1000, 1) if lags else None,
        }

        # One full resync of the steady state, the operator's own code in this process (the operator
        # process is stopped, so it holds the region's lock alone), split into requests, queries and ours.
        region = Region.objects.get(pk=region.pk)
        operator_thread = RegionOperator(
            region.pk, region.slug, OperatorConfig(gc_known_tenants_only=True), threading.Event()
        )
        wait_for(operator_thread.lock.try_acquire, what="the region lock", timeout=120)
        try:
            cluster = Cluster(region_client(region))
            progress("timing two full resyncs of the steady state (this process's first, then its next)")
            t0 = time.perf_counter()
            operator_thread.resync(region, cluster)
            first = time.perf_counter() - t0
            with time_split() as spent:
                t0 = time.perf_counter()
                operator_thread.resync(region, cluster)
                resync = time.perf_counter() - t0
        finally:
            operator_thread.lock.release()
        bare = _bare_lists(api, region)
        progress(
            f"resync {resync:.2f}s (first in this process {first:.2f}s; {spent});"
            f" one LIST of each kind {bare['seconds']:.2f}s"
        )
    figures["full_resync_seconds"] = round(resync, 2)
    figures["first_resync_seconds"] = round(first, 2)
    figures["resync_split"] = {
        "kube_seconds": round(spent["kube_seconds"], 3),
        "kube_requests": spent["kube_requests"],
        "db_seconds": round(spent["db_seconds"], 3),
        "db_queries": spent["db_queries"],
        "db_top": spent["db_top"],
        "ours_seconds": round(resync - spent["kube_seconds"] - spent["db_seconds"], 3),
    }
    figures["bare_list_seconds"] = bare["seconds"]
    figures["bare_lists"] = bare
    figures["ratio"] = {
        "resync_vs_bare_list": ratio(resync, bare["seconds"]),
        "cold_start_vs_raw": ratio(cold, raw["seconds"]),
        "cold_start_less_startup_vs_raw": ratio(cold - figures["operator_startup_seconds"], raw["seconds"]),
        "steady_rss_vs_idle": ratio(
            figures["operator_rss_mib"]["steady"], figures["operator_rss_mib"]["idle"]
        ),
    }
    lag_p99 = figures["watch_to_db_lag"]["p99_ms"]
    figures["goals"] = {
        f"resync within {GOAL_RESYNC_RATIO}x of one LIST of each kind ({n} pods)": figures["ratio"][
            "resync_vs_bare_list"
        ]
        <= GOAL_RESYNC_RATIO,
        f"cold start within {GOAL_COLD_RATIO}x of the raw creation ({n} pods)": figures["ratio"][
            "cold_start_vs_raw"
        ]
        <= GOAL_COLD_RATIO,
        f"watch-to-database lag p99 under {GOAL_LAG_P99_MS} ms ({n} pods)": lag_p99 < GOAL_LAG_P99_MS,
    }
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def curve_point(size: int, f: dict[str, Any]) -> dict[str, Any]:
    """The figures of one size that the curve's table shows."""
    split = f.get("resync_split") or {}
    return {
        "pods": size,
        "nodes": f.get("nodes"),
        "resync_seconds": f.get("full_resync_seconds"),
        "bare_list_seconds": f.get("bare_list_seconds"),
        "resync_ours_seconds": split.get("ours_seconds"),
        "resync_kube_seconds": split.get("kube_seconds"),
        "resync_db_seconds": split.get("db_seconds"),
        "cold_start_seconds": f.get("cold_start_seconds"),
        "raw_cold_start_seconds": (f.get("raw_cold_start") or {}).get("seconds"),
        "lag_p99_ms": (f.get("watch_to_db_lag") or {}).get("p99_ms"),
        "rss_steady_mib": (f.get("operator_rss_mib") or {}).get("steady"),
    }


def growth(points: Sequence[dict[str, Any]], key: str) -> float | None:
    """How `key` grew from the smallest size to the largest, divided by how the size grew: 1.0 is linear,
    above it worse than linear."""
    first, last = points[0], points[-1]
    if len(points) < 2 or not first.get(key) or last.get(key) is None:
        return None
    return round((last[key] / first[key]) / (last["pods"] / first["pods"]), 2)


def run_curve(
    sizes: Sequence[int],
    progress: Progress,
    *,
    run_one: Callable[[int, Progress], dict[str, Any]] = run,
    settle: Callable[[Callable[[str], None]], Any] = common.settle_load,
) -> dict[str, Any]:
    """`run` at each size, the load allowed to settle between them. The result keeps the figures of the size
    closest to DEFAULT_N at its top level (the single-size rows and goals), and `curve`: one point a size."""
    by_size: dict[int, dict[str, Any]] = {}
    for position, size in enumerate(sizes):
        if position:
            settle(progress)
        progress(f"size curve: {size} pods ({position + 1}/{len(sizes)})")
        by_size[size] = run_one(size, progress)
    points = [curve_point(size, by_size[size]) for size in sizes]
    main = min(sizes, key=lambda s: abs(s - DEFAULT_N))
    keys = ("resync_seconds", "bare_list_seconds", "cold_start_seconds", "raw_cold_start_seconds")
    return {
        **by_size[main],
        "curve": points,
        "curve_growth": {key: growth(points, key) for key in keys},
        "by_size": {str(size): by_size[size] for size in sizes},
    }


def main() -> int:
    parser = common.parser("Operator scale on a dedicated cluster.", DEFAULT_N, "pods (nodes: a tenth)")
    parser.add_argument("--sizes", type=common.parse_sizes, help="a size curve, e.g. 1000,5000,20000")
    parser.add_argument(
        "--concurrency", type=int, help="creations at once on the raw side (default: the operator's)"
    )
    args = parser.parse_args()
    if args.sizes:
        return common.run_main(
            "operator_scale",
            lambda n, p: run_curve(
                args.sizes, p, run_one=lambda s, q: run(s, q, concurrency=args.concurrency)
            ),
            args,
        )
    return common.run_main("operator_scale", lambda n, p: run(n, p, concurrency=args.concurrency), args)


if __name__ == "__main__":
    raise SystemExit(main())
