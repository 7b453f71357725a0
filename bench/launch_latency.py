"""Launch latency: N sequential launches through the API until the instance is running, against N direct
creations of the same pod spec with the kubernetes client until the pod is Running, on the same sandbox
cluster (us-east-1 of the sandbox instance `bench`; one instance or pod at a time, deleted before the next).

Ours: POST /instances on gunicorn -> quota and capacity admission -> the reconcile task on a Celery worker
(namespace objects, Secret, Service, pod) -> kwok runs the pod -> `manage.py operator`'s watch records it ->
GET /instances/{id} says running. Both sides poll at the same interval; the two kinds alternate (and which
goes first alternates) so that drift on a shared machine hits both alike. kwok's pod-ready stage has no
delay (sandbox/stages/ adds only the image-pull failure), so both pay scheduling and kwok's patch only.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import requests

from bench import common
from bench.common import Progress, ratio, summary_ms

DEFAULT_N = 50

POLL = 0.02  # seconds between polls, both sides
TIMEOUT = 180.0
REGION = "us-east-1"
GOAL_P50_RATIO = 1.2
GOAL_P99_EXTRA_MS = 300


def run(n: int, progress: Progress, *, instance_type: str = "gpu-h100x1") -> dict[str, Any]:
    from kubernetes import client

    from apps.instances.models import Instance, InstanceEvent
    from bench import db, kube, seed
    from bench.stack import Stack, wait_operator_leads

    db.reset(progress)
    seed.catalog()
    sandbox = kube.bench_sandbox()
    region = seed.connect_region(REGION, sandbox.regions[REGION])
    who = seed.tenant(f"bench-lat-{uuid.uuid4().hex[:6]}")
    api = kube.api_client(sandbox.regions[REGION])
    core = client.CoreV1Api(api)
    namespaces: list[str] = []
    with Stack("launch_latency") as stack:
        since = common.now_utc()
        stack.operator(REGION)
        stack.worker()
        url = stack.web()
        wait_operator_leads(region, since, stack)
        progress(f"web {url}, worker and operator up; operator leads {REGION}")
        http = requests.Session()
        base = f"{url}/api/v1/tenants/{who.slug}/instances"
        http.headers.update(who.headers())

        def ours(i: int) -> tuple[float, str]:
            body = {"name": f"lat-{i}", "instance_type": instance_type, "region": REGION, "image": "pytorch"}
            t0 = time.perf_counter()
            response = http.post(base, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=60)
            if response.status_code != 201:
                raise RuntimeError(f"launch {i}: {response.status_code} {response.text[:300]}")
            instance_id = response.json()["id"]
            state = response.json()["state"]
            deadline = t0 + TIMEOUT
            while state != "running":
                if state == "failed" or time.perf_counter() > deadline:
                    raise RuntimeError(f"launch {i}: state {state}")
                time.sleep(POLL)
                state = http.get(f"{base}/{instance_id}", timeout=60).json()["state"]
            elapsed = time.perf_counter() - t0
            if http.delete(f"{base}/{instance_id}", timeout=60).status_code != 202:
                raise RuntimeError(f"terminate {i} refused")
            while http.get(f"{base}/{instance_id}", timeout=60).json()["state"] != "terminated":
                if time.perf_counter() > deadline + TIMEOUT:
                    raise RuntimeError(f"instance {i} never terminated")
                time.sleep(0.1)
            return elapsed, instance_id

        # Warm-up (not counted): the tenant's namespace objects, connection pools, imports.
        _, first_id = ours(-1)
        baseline_ns = kube.baseline_namespace(api)
        namespaces += [baseline_ns]

        def baseline(i: int) -> float:
            pod = kube.baseline_pod(first_id, baseline_ns, f"b-{i + 1}")
            t0 = time.perf_counter()
            core.create_namespaced_pod(baseline_ns, pod)  # type: ignore[arg-type]
            kube.wait_pod(core, baseline_ns, pod["metadata"]["name"], "Running", poll=POLL, timeout=TIMEOUT)
            elapsed = time.perf_counter() - t0
            core.delete_namespaced_pod(pod["metadata"]["name"], baseline_ns, grace_period_seconds=0)
            kube.wait_pod(core, baseline_ns, pod["metadata"]["name"], None, poll=0.1, timeout=TIMEOUT)
            return elapsed

        baseline(-2)
        ours_s: list[float] = []
        base_s: list[float] = []
        ids: list[str] = []
        tick = progress.every(n, "launches (ours and baseline)")
        for i in range(n):
            if i % 2 == 0:
                elapsed, instance_id = ours(i)
                base_s.append(baseline(i))
            else:
                base_s.append(baseline(i))
                elapsed, instance_id = ours(i)
            ours_s.append(elapsed)
            ids.append(instance_id)
            tick(i + 1)
        # Server side: from the row's creation to the operator recording "running" (no HTTP, no polling).
        server_s = []
        for instance_id in ids:
            instance = Instance.objects.get(pk=instance_id)
            running = (
                InstanceEvent.objects.filter(instance_id=instance_id, to_state="running")
                .exclude(from_state="running")
                .order_by("created_at")
                .first()
            )
            if running is not None:
                server_s.append((running.created_at - instance.created_at).total_seconds())
        for name in [*namespaces, who_namespace(who)]:
            kube.drop_namespace(api, name)
    ours_sum, base_sum = summary_ms(ours_s), summary_ms(base_s)
    extra_p99 = round(ours_sum["p99_ms"] - base_sum["p99_ms"], 1)
    p50_ratio = ratio(ours_sum["p50_ms"], base_sum["p50_ms"])
    return {
        "n": n,
        "instance_type": instance_type,
        "poll_ms": POLL * 1000,
        "ours": ours_sum,
        "baseline": base_sum,
        "ours_server_side": summary_ms(server_s),
        "ratio": {k: ratio(ours_sum[k], base_sum[k]) for k in ("p50_ms", "p95_ms", "p99_ms")},
        "p99_extra_ms": extra_p99,
        "goals": {
            f"p50 within {GOAL_P50_RATIO}x of the raw API server": p50_ratio <= GOAL_P50_RATIO,
            f"p99 within {GOAL_P99_EXTRA_MS} ms of the raw API server": extra_p99 <= GOAL_P99_EXTRA_MS,
        },
    }


def who_namespace(who: Any) -> str:
    from apps.operator import names

    return names.namespace_name(who.tenant.pk, who.tenant.slug)


def main() -> int:
    parser = common.parser(
        "Launch latency through the API against direct pod creation.", DEFAULT_N, "launches"
    )
    parser.add_argument("--instance-type", default="gpu-h100x1")
    args = parser.parse_args()
    return common.run_main("launch_latency", lambda n, p: run(n, p, instance_type=args.instance_type), args)


if __name__ == "__main__":
    raise SystemExit(main())
