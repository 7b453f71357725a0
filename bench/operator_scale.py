"""Operator scale: N pods (default 5,000) on N/10 simulated nodes, in a dedicated cluster started here (no
other sandbox instance is loaded): time until a freshly started operator has every instance running (cold
start: it creates every pod), watch-to-database lag p50/p99 while those pods turn Running, one full resync
of the steady state, and the operator's memory.

Baselines, same run and cluster: the resync against a bare LIST of every pod (what any resync must at least
read); the memory against the same operator idle on an empty database. The lag is measured against a watch
of our own: the moment this process's watch sees a pod Running, to the row the operator writes (same clock).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from bench import common
from bench.common import Progress, ratio, summary_ms

DEFAULT_N = 5000

PODS_PER_NODE = 10
INSTANCES_PER_TENANT = 100
TIMEOUT = 3600.0


def _watch_running(api: Any, seen: dict[str, float], stop: threading.Event) -> None:
    """Record when each gpucloud pod is first seen Running (wall clock, as the database's timestamps)."""
    from kubernetes import client, watch

    from apps.operator import names

    core = client.CoreV1Api(api)
    while not stop.is_set():
        stream = watch.Watch()
        try:
            for event in stream.stream(
                core.list_pod_for_all_namespaces,
                label_selector=names.managed_selector(),
                timeout_seconds=5,
                _preload_content=False,
            ):
                pod = event["raw_object"]
                if (pod.get("status") or {}).get("phase") == "Running":
                    instance = (pod["metadata"].get("labels") or {}).get(names.INSTANCE_LABEL)
                    if instance and instance not in seen:
                        seen[instance] = time.time()
                if stop.is_set():
                    break
        except Exception:  # a dropped watch: resume (the first sighting is what counts)
            time.sleep(0.2)


def run(n: int, progress: Progress) -> dict[str, Any]:
    from django.db.models import Min
    from kubernetes import client

    from apps.catalog.models import InstanceType, Region
    from apps.instances.models import Instance, InstanceEvent
    from apps.operator.client import api_client as region_client
    from apps.operator.cluster import Cluster
    from apps.operator.operator_loop import OperatorConfig, RegionOperator
    from bench import db, kube, seed
    from bench.stack import Stack, rss_kib, wait_operator_leads
    from tests.support.processes import wait_for

    nodes = max(1, n // PODS_PER_NODE)
    figures: dict[str, Any] = {"pods": n, "nodes": nodes}
    with kube.dedicated_cluster("scale", cpu_nodes=nodes, progress=progress) as (kubeconfig, fleet):
        db.reset(progress)
        seed.catalog()
        seed.catalog(fleet)
        region = seed.connect_region(kube.BENCH_REGION, kubeconfig)
        api = kube.api_client(kubeconfig)

        # Baseline memory: the operator leading the region with nothing to do.
        with Stack("operator_idle") as stack:
            since = common.now_utc()
            idle = stack.operator(kube.BENCH_REGION, resync_seconds=86400)
            wait_operator_leads(region, since, stack)
            time.sleep(3)
            idle_rss = rss_kib(idle.pid)
        progress(f"idle operator: {idle_rss['VmRSS'] // 1024} MiB resident")

        itype = InstanceType.objects.get(slug="cpu-4x")
        tenants = [seed.tenant(f"bench-scale-{i}") for i in range(max(1, n // INSTANCES_PER_TENANT))]
        rows = []
        for i, who in enumerate(tenants):
            count = (
                INSTANCES_PER_TENANT
                if i < len(tenants) - 1
                else n - INSTANCES_PER_TENANT * (len(tenants) - 1)
            )
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

        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_running, args=(api, seen, stop), daemon=True)
        watcher.start()
        peak_rss = 0
        with Stack("operator_scale") as stack:
            t0 = time.perf_counter()
            operator = stack.operator(kube.BENCH_REGION, resync_seconds=86400)
            last = -1
            deadline = time.monotonic() + TIMEOUT
            while (running := Instance.objects.filter(region=region, state="running").count()) < n:
                peak_rss = max(peak_rss, rss_kib(operator.pid).get("VmRSS", 0))
                if running // max(1, n // 10) != last:
                    last = running // max(1, n // 10)
                    progress(f"running: {running}/{n} (operator {peak_rss // 1024} MiB)")
                if time.monotonic() > deadline or not operator.alive():
                    raise RuntimeError(
                        f"only {running}/{n} running; operator log:\n{operator.output()[-3000:]}"
                    )
                time.sleep(1)
            cold = time.perf_counter() - t0
            progress(f"all {n} running after {cold:.1f}s")
            time.sleep(5)  # settle: events and capacity passes after the wave
            steady = rss_kib(operator.pid)
            figures["operator_rss_mib"] = {
                "idle": round(idle_rss["VmRSS"] / 1024, 1),
                "steady": round(steady["VmRSS"] / 1024, 1),
                "peak": round(max(steady["VmHWM"], peak_rss) / 1024, 1),
            }
        stop.set()

        # Watch-to-database lag: our watch's first sighting of Running -> the operator's "running" row.
        recorded = (
            InstanceEvent.objects.filter(instance__region=region, to_state="running")
            .exclude(from_state="running")
            .values("instance_id")
            .annotate(at=Min("created_at"))
        )
        lags = [
            max(0.0, row["at"].timestamp() - seen[str(row["instance_id"])])
            for row in recorded
            if str(row["instance_id"]) in seen
        ]
        figures["cold_start_seconds"] = round(cold, 1)
        figures["watch_to_db_lag"] = summary_ms(lags) | {"samples": len(lags)}

        # One full resync of the steady state, the operator's own code in this process (the operator
        # process is stopped, so it holds the region's lock alone).
        region = Region.objects.get(pk=region.pk)
        operator_thread = RegionOperator(
            region.pk, region.slug, OperatorConfig(gc_known_tenants_only=True), threading.Event()
        )
        wait_for(operator_thread.lock.try_acquire, what="the region lock", timeout=120)
        try:
            cluster = Cluster(region_client(region))
            progress("timing one full resync of the steady state")
            t0 = time.perf_counter()
            operator_thread.resync(region, cluster)
            resync = time.perf_counter() - t0
        finally:
            operator_thread.lock.release()
        core = client.CoreV1Api(api)
        t0 = time.perf_counter()
        from apps.operator import names

        listed = json.loads(
            core.list_pod_for_all_namespaces(
                label_selector=names.managed_selector(), _preload_content=False
            ).data  # type: ignore[attr-defined]  # the raw response, not a V1PodList
        )["items"]
        list(Instance.objects.filter(region=region).exclude(state="terminated").values_list("pk", flat=True))
        bare = time.perf_counter() - t0
        progress(f"resync {resync:.1f}s; bare list of {len(listed)} pods {bare:.2f}s")
    figures["full_resync_seconds"] = round(resync, 2)
    figures["bare_list_seconds"] = round(bare, 3)
    figures["ratio"] = {
        "resync_vs_bare_list": ratio(resync, bare),
        "steady_rss_vs_idle": ratio(
            figures["operator_rss_mib"]["steady"], figures["operator_rss_mib"]["idle"]
        ),
    }
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def main() -> int:
    args = common.parser(
        "Operator scale on a dedicated cluster.", DEFAULT_N, "pods (nodes: a tenth)"
    ).parse_args()
    return common.run_main("operator_scale", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
