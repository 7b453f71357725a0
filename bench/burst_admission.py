"""Burst admission: N launches from 20 tenants through 32 concurrent clients, time until every admitted
instance runs, against direct creation of as many pods (the same spec) with the same concurrency; then
quota overruns counted from the database (must be zero).

Runs on a dedicated cluster (bench/kube.py) with enough CPU nodes for every launch (cpu-4x: 15 per node),
so no other sandbox instance is loaded. Four tenants get small quotas (SMALL_QUOTA: 3 instances' worth of
vCPU) so that concurrent launches race for their last units: admission must refuse the excess, never
exceed the limit. The baseline creates as many pods as were admitted, so both sides run the same count.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from bench import common, cpu
from bench.common import Progress, ratio

DEFAULT_N = 500

TENANTS = 20
SMALL_TENANTS = 4
CLIENTS = 32
INSTANCE_TYPE = "cpu-4x"
PER_NODE = 15  # cpu-4x on a cpu64 node (62 allocatable vCPU)
SMALL_QUOTA = {"max_gpus": 0, "max_instances": 5, "max_vcpu": 12, "max_memory_gib": 64, "max_volume_gib": 10}
TIMEOUT = 1800.0
POLL = 0.1
GOAL_RATIO = 1.5  # all admitted running, against the equal-work baseline
GOAL_ADMISSIONS_PER_SECOND = 40  # launch requests answered (admitted or refused) per second


def run(n: int, progress: Progress) -> dict[str, Any]:
    from django.db.models import Count, Sum
    from kubernetes import client

    from apps.instances.models import Instance
    from apps.quotas.models import TenantQuota
    from bench import db, kube, seed
    from bench.stack import Stack, wait_operator_leads

    nodes = math.ceil(n / PER_NODE) + 2
    with kube.dedicated_cluster("burst", cpu_nodes=nodes, progress=progress) as (kubeconfig, fleet):
        db.reset(progress)
        seed.catalog()
        seed.catalog(fleet)
        region = seed.connect_region(kube.BENCH_REGION, kubeconfig)
        tenants = [
            seed.tenant(f"bench-burst-{i}", quota=SMALL_QUOTA if i < SMALL_TENANTS else None)
            for i in range(TENANTS)
        ]
        api = kube.api_client(kubeconfig)
        core = client.CoreV1Api(api)
        with Stack("burst_admission") as stack:
            since = common.now_utc()
            stack.operator(kube.BENCH_REGION)
            stack.worker()
            url = stack.web()
            wait_operator_leads(region, since, stack)
            progress(
                f"web {url}, worker and operator up; {nodes} nodes; {TENANTS} tenants ({SMALL_TENANTS} small)"
            )
            local = threading.local()

            def session() -> requests.Session:
                if not hasattr(local, "s"):
                    local.s = requests.Session()
                return local.s

            codes: Counter[str] = Counter()
            done = [0]
            lock = threading.Lock()
            tick = progress.every(n, "launch requests answered")

            def launch(i: int) -> str | None:
                who = tenants[i % TENANTS]
                response = session().post(
                    f"{url}/api/v1/tenants/{who.slug}/instances",
                    json={
                        "name": f"burst-{i}",
                        "instance_type": INSTANCE_TYPE,
                        "region": kube.BENCH_REGION,
                        "image": "cuda-12",
                    },
                    headers={**who.headers(), "Idempotency-Key": str(uuid.uuid4())},
                    timeout=300,
                )
                code = str(response.status_code)
                if response.status_code == 409:
                    code += f" {response.json()['error']['code']}"
                with lock:
                    codes[code] += 1
                    done[0] += 1
                    tick(done[0])
                return response.json()["id"] if response.status_code == 201 else None

            cpu_start = cpu.sample()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                ids = [i for i in pool.map(launch, range(n)) if i]
            admitted_at = time.perf_counter() - t0
            cpu_admitted = cpu.sample()
            progress(
                f"{len(ids)} admitted in {admitted_at:.1f}s; responses {dict(codes)}; waiting for running"
            )
            deadline = time.monotonic() + TIMEOUT
            while (running := Instance.objects.filter(pk__in=ids, state="running").count()) < len(ids):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {running} of {len(ids)} running after {TIMEOUT:.0f}s")
                time.sleep(POLL)
            ours = time.perf_counter() - t0
            cpu_running = cpu.sample()
            progress(f"all {len(ids)} admitted instances running after {ours:.1f}s")

            # Quota overruns, from the database: live instances per tenant against its limits.
            overruns = []
            for row in (
                Instance.objects.exclude(state="terminated")
                .values("tenant_id")
                .annotate(
                    count=Count("id"), vcpu=Sum("vcpu"), memory=Sum("memory_gib"), gpus=Sum("gpu_count")
                )
            ):
                quota = TenantQuota.objects.get(tenant_id=row["tenant_id"])
                for used, limit in (
                    (row["count"], quota.max_instances),
                    (row["vcpu"], quota.max_vcpu),
                    (row["memory"], quota.max_memory_gib),
                    (row["gpus"], quota.max_gpus),
                ):
                    if used > limit:
                        overruns.append({"tenant": str(row["tenant_id"]), "used": used, "limit": limit})
            small_ids = [t.tenant.pk for t in tenants[:SMALL_TENANTS]]
            small_admitted = Instance.objects.filter(tenant_id__in=small_ids).count()
            stack.processes.stop_all()  # the baseline runs alone on the cluster, as ours did

        # Equal work: the same namespace objects (a large-quota tenant's) and, per admitted instance, its
        # own Secret, Service and pod as the operator builds them.
        baseline_ns = kube.baseline_namespace(api, tenants[-1].tenant, region)
        pods = len(ids)
        objects = [
            kube.baseline_objects(kube.load_baseline_instance(instance_id), baseline_ns, f"b-{i}")
            for i, instance_id in enumerate(ids)
        ]

        def create(instance_objects: list[dict[str, Any]]) -> None:
            kube.create_instance_objects(core, instance_objects)

        # Free the nodes first: our instances' pods would otherwise hold the capacity the baseline needs.
        for who in tenants:
            kube.drop_namespace(api, namespace_of(who))
        wait_empty(core, progress)
        cpu_baseline = cpu.sample()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(create, objects))
        deadline = time.monotonic() + TIMEOUT
        while (running := count_running(core, baseline_ns)) < pods:
            if time.monotonic() > deadline:
                raise RuntimeError(f"baseline: only {running} of {pods} pods running")
            time.sleep(POLL)
        baseline = time.perf_counter() - t0
        cpu_baseline_done = cpu.sample()
        progress(f"baseline: {pods} pods running after {baseline:.1f}s")
    cpu_spent = {
        "ours_admission": cpu.spent(cpu_start, cpu_admitted, wall_seconds=admitted_at, per=n),
        "ours_until_running": cpu.spent(cpu_start, cpu_running, wall_seconds=ours, per=len(ids)),
        "baseline": cpu.spent(cpu_baseline, cpu_baseline_done, wall_seconds=baseline, per=pods),
    }
    cores = os.cpu_count() or 1
    return {
        "launches": n,
        "tenants": TENANTS,
        "clients": CLIENTS,
        "instance_type": INSTANCE_TYPE,
        "admitted": len(ids),
        "responses": dict(codes),
        "small_tenants_admitted": small_admitted,
        "small_tenants_limit": SMALL_TENANTS * (SMALL_QUOTA["max_vcpu"] // 4),
        "ours_seconds": round(ours, 2),
        "ours_admission_seconds": round(admitted_at, 2),
        "baseline_pods": pods,
        "baseline_seconds": round(baseline, 2),
        "ratio": ratio(ours, baseline),
        "admissions_per_second": round(n / admitted_at, 1),
        "quota_overruns": len(overruns),
        # Where the CPU went (bench/cpu.py): with the cores busy, a phase cannot end sooner than its CPU
        # seconds over the cores; these floors say how far the goals are from what the machine allows.
        "cpu": cpu_spent,
        "cpu_floor": {
            "answers_per_second_at_most": round(
                n * cores / max(cpu_spent["ours_admission"]["cpu_seconds_total"], 0.01), 1
            ),
            "ours_seconds_at_least": round(cpu_spent["ours_until_running"]["cpu_seconds_total"] / cores, 1),
            "baseline_seconds_at_least": round(cpu_spent["baseline"]["cpu_seconds_total"] / cores, 1),
        },
        "overrun_detail": overruns[:10],
        "goals": {
            f"all running within {GOAL_RATIO}x the equal-work baseline": ours <= GOAL_RATIO * baseline,
            f">= {GOAL_ADMISSIONS_PER_SECOND} launch requests answered a second": n / admitted_at
            >= GOAL_ADMISSIONS_PER_SECOND,
            "zero quota overruns": not overruns,
            "small quotas were reached (the race was real)": small_admitted
            == SMALL_TENANTS * (SMALL_QUOTA["max_vcpu"] // 4),
        },
    }


def namespace_of(who: Any) -> str:
    from apps.operator import names

    return names.namespace_name(who.tenant.pk, who.tenant.slug)


def count_running(core: Any, namespace: str) -> int:
    pods = core.list_namespaced_pod(namespace, field_selector="status.phase=Running", _preload_content=False)
    import json

    return len(json.loads(pods.data)["items"])


def wait_empty(core: Any, progress: Progress) -> None:
    """Until no gpucloud pod is left on the cluster (the tenants' namespaces are being deleted)."""
    import json

    from apps.operator.names import managed_selector

    deadline = time.monotonic() + TIMEOUT
    while True:
        data = core.list_pod_for_all_namespaces(label_selector=managed_selector(), _preload_content=False)
        left = len(json.loads(data.data)["items"])
        if not left:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{left} pods of ours still on the cluster")
        time.sleep(1)


def main() -> int:
    args = common.parser("Burst admission against direct pod creation.", DEFAULT_N, "launches").parse_args()
    return common.run_main("burst_admission", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
