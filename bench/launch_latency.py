"""Launch latency: N sequential launches through the API until the instance is running, against N direct
creations of the same objects with the kubernetes client until the pod is Running, on the same sandbox
cluster (us-east-1 of the sandbox instance `bench`; one instance or pod at a time, deleted before the next).

Ours: POST /instances on gunicorn -> admission -> the pod, its Secret and Service created (by the launch path
or the Celery worker) -> kwok runs the pod -> `manage.py operator`'s watch records it -> the client's
`GET /instances/{id}?wait=running` returns. Baseline (equal work): a namespace holding the operator's
namespace objects of the same tenant (ResourceQuota, LimitRange, ServiceAccount, network policies, built
by apps/operator/manifests from the same spec), into which the instance's Secret, Service and pod (the
operator's manifests) are created concurrently; completion seen by a pod watch kept open, as the
operator's is. Neither side polls, unless the server does not know `?wait=` (then ours polls every
POLL seconds and the result says so). The two kinds alternate (and which goes first alternates) so that
drift on a shared machine hits both alike. kwok's pod-ready stage has no delay (sandbox/stages/ adds only
the image-pull failure), so both pay scheduling and kwok's patch only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import requests

from bench import common, cpu
from bench.common import Progress, ratio, summary_ms

DEFAULT_N = 200  # percentiles up to p99 need a couple of hundred samples

POLL = 0.02  # seconds between polls, only when the server has no wait endpoint
WAIT_TIMEOUT = 30  # the wait endpoint's timeout parameter (seconds)
TIMEOUT = 180.0
REGION = "us-east-1"
WARMUP_ROUNDS = 2  # untimed: rounds of WARMUP_CONCURRENCY launches at once, over every worker process
WARMUP_CONCURRENCY = 8  # > web workers (2) and Celery's prefork children (4): each gets some
GOAL_P50_EXTRA_MS = 25
# Where a launch's time goes, from the client's clock and the rows' (one machine, one clock): the request
# until the instance row exists (authentication, admission); the row until the 201 is received (the rest of
# the transaction, its commit, the response); the row until the operator recorded the pod it created (the
# NOTIFY at commit, the reconcile, the Service, Secret and pod creations); that record until `running` is
# recorded (scheduling, kwok, the watch, the write); that until the waiting client has the answer.
FLOOR_REQUESTS = 100
STAGES = ("request to row", "row to 201", "row to pod created", "pod created to running", "running to client")
GOAL_P99_EXTRA_MS = 100


class WaitClient:
    """GET /instances/{id}?wait=running&timeout=30 until the instance runs (the documented long-poll).
    Falls back to polling every POLL seconds when the server refuses the parameter (400) or ignores it
    (answers at once, not running, long before its timeout); `mode` says which ran."""

    def __init__(self, http: requests.Session, base: str):
        self.http, self.base = http, base
        self.mode = "wait"  # until the server shows otherwise

    def until_running(self, instance_id: str, state: str, deadline: float) -> str:
        url = f"{self.base}/{instance_id}"
        while state != "running":
            if state == "failed" or time.perf_counter() > deadline:
                raise RuntimeError(f"instance {instance_id}: state {state}")
            if self.mode == "wait":
                asked = time.perf_counter()
                params: dict[str, str | int] = {"wait": "running", "timeout": WAIT_TIMEOUT}
                response = self.http.get(url, params=params, timeout=90)
                if response.status_code == 400:
                    self.mode = "poll (the server refused ?wait=)"
                    continue
                if response.status_code == 503:  # too_many_waiters (warm-up runs 8 at once): pace, as the SDK
                    time.sleep(POLL)
                    state = self.http.get(url, timeout=60).json()["state"]
                    continue
                state = response.json()["state"]
                if state not in ("running", "failed") and time.perf_counter() - asked < WAIT_TIMEOUT / 2:
                    self.mode = "poll (the server ignored ?wait=)"
            else:
                time.sleep(POLL)
                state = self.http.get(url, timeout=60).json()["state"]
        return state


def run(n: int, progress: Progress, *, instance_type: str = "gpu-h100x1") -> dict[str, Any]:
    from kubernetes import client

    from apps.instances.models import Instance, InstanceEvent
    from bench import db, kube, seed
    from bench.stack import WEB_WORKERS, Stack, wait_operator_leads

    db.reset(progress)
    seed.catalog()
    sandbox = kube.bench_sandbox()
    region = seed.connect_region(REGION, sandbox.regions[REGION])
    who = seed.tenant(f"bench-lat-{uuid.uuid4().hex[:6]}")
    api = kube.api_client(sandbox.regions[REGION])
    core = client.CoreV1Api(api)
    scheduler = kube.scheduler_client_qps(sandbox.dir, REGION)
    progress(
        f"kube-scheduler client QPS {scheduler['qps']}, burst {scheduler['burst']} ({scheduler['source']})"
    )
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
        waiter = WaitClient(http, base)

        marks: dict[
            str, tuple[float, float, float]
        ] = {}  # instance id: wall clock sent, answered, saw running

        def ours(i: int, session: requests.Session = http) -> tuple[float, str]:
            body = {"name": f"lat-{i}", "instance_type": instance_type, "region": REGION, "image": "pytorch"}
            sent, t0 = time.time(), time.perf_counter()
            response = session.post(
                base, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=60
            )
            answered = time.time()
            if response.status_code != 201:
                raise RuntimeError(f"launch {i}: {response.status_code} {response.text[:300]}")
            instance_id = response.json()["id"]
            client_ = waiter if session is http else WaitClient(session, base)
            client_.until_running(instance_id, response.json()["state"], t0 + TIMEOUT)
            elapsed = time.perf_counter() - t0
            marks[instance_id] = (sent, answered, time.time())
            if session.delete(f"{base}/{instance_id}", timeout=60).status_code != 202:
                raise RuntimeError(f"terminate {i} refused")
            while session.get(f"{base}/{instance_id}", timeout=60).json()["state"] != "terminated":
                if time.perf_counter() > t0 + 2 * TIMEOUT:
                    raise RuntimeError(f"instance {i} never terminated")
                time.sleep(0.1)
            return elapsed, instance_id

        # Warm-up (not counted): the tenant's namespace objects, then rounds of concurrent launches, each on
        # a connection of its own, so every gunicorn worker and every Celery child has imported, connected
        # and served launches before the first timed one.
        _, first_id = ours(-1)

        def fresh(i: int) -> None:
            with requests.Session() as session:
                session.headers.update(who.headers())
                ours(i, session)

        for round_ in range(WARMUP_ROUNDS):
            with ThreadPoolExecutor(WARMUP_CONCURRENCY) as pool:
                list(pool.map(fresh, range(-100 * (round_ + 1), -100 * (round_ + 1) + WARMUP_CONCURRENCY)))
        progress(
            f"warmed: {1 + WARMUP_ROUNDS * WARMUP_CONCURRENCY} untimed launches, {WEB_WORKERS} web workers"
            " and the Celery worker"
        )
        template = kube.load_baseline_instance(first_id)
        baseline_ns = kube.baseline_namespace(api, who.tenant, region)
        namespaces += [baseline_ns]
        watch = kube.PodWatch(api, namespace=baseline_ns).start()

        def baseline(i: int) -> float:
            objects = kube.baseline_objects(template, baseline_ns, f"b-{i + 1000}")
            key = f"{baseline_ns}/{objects[-1]['metadata']['name']}"
            t0 = time.perf_counter()
            kube.create_instance_objects(core, objects)
            elapsed = watch.wait_running(key, TIMEOUT) - t0
            for manifest in objects:
                kube.delete_raw(core, manifest)
            watch.wait_gone(key, TIMEOUT)
            return elapsed

        for i in range(3):
            baseline(-10 - i)
        ours_s: list[float] = []
        base_s: list[float] = []
        ids: list[str] = []
        # CPU per side (bench/cpu.py), each launch or creation with its teardown, sampled outside the timing.
        cpu_used: dict[str, dict[str, float]] = {"ours": {}, "baseline": {}}
        wall = {"ours": 0.0, "baseline": 0.0}

        def counted(side: str, work: Callable[[], Any]) -> Any:
            before, t0 = cpu.sample(), time.perf_counter()
            out = work()
            wall[side] += time.perf_counter() - t0
            after = cpu.sample()
            for part, seconds in after.items():
                cpu_used[side][part] = cpu_used[side].get(part, 0.0) + seconds - before.get(part, 0.0)
            return out

        tick = progress.every(n, "launches (ours and baseline)")
        for i in range(n):
            if i % 2 == 0:
                elapsed, instance_id = counted("ours", partial(ours, i))
                base_s.append(counted("baseline", partial(baseline, i)))
            else:
                base_s.append(counted("baseline", partial(baseline, i)))
                elapsed, instance_id = counted("ours", partial(ours, i))
            ours_s.append(elapsed)
            ids.append(instance_id)
            tick(i + 1)
        watch.stop()
        progress(f"client mode: {waiter.mode}")
        # A floor under every API launch: one authenticated request that does nothing (GET /me).
        me_s = []
        for _ in range(FLOOR_REQUESTS):
            t0 = time.perf_counter()
            if http.get(f"{url}/api/v1/me", timeout=60).status_code != 200:
                raise RuntimeError("GET /api/v1/me failed")
            me_s.append(time.perf_counter() - t0)
        # Server side: from the row's creation to the operator recording "running" (no HTTP, no waiting).
        server_s = []
        stages: dict[str, list[float]] = {name: [] for name in STAGES}
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
            pod_created = InstanceEvent.objects.filter(instance_id=instance_id, name="pod_created").first()
            if running is not None and pod_created is not None:
                sent, answered, saw = marks[instance_id]
                created, made = instance.created_at.timestamp(), pod_created.created_at.timestamp()
                done = running.created_at.timestamp()
                for name, seconds in zip(
                    STAGES,
                    (created - sent, answered - created, made - created, done - made, saw - done),
                    strict=True,
                ):
                    stages[name].append(seconds)
        for name in [*namespaces, who_namespace(who)]:
            kube.drop_namespace(api, name)
    ours_sum, base_sum = summary_ms(ours_s), summary_ms(base_s)
    extra = {p: round(ours_sum[f"{p}_ms"] - base_sum[f"{p}_ms"], 1) for p in ("p50", "p99")}
    return {
        "n": n,
        "instance_type": instance_type,
        "client_mode": waiter.mode,
        "poll_ms": POLL * 1000 if waiter.mode != "wait" else None,
        "warmup_launches": 1 + WARMUP_ROUNDS * WARMUP_CONCURRENCY,
        "scheduler_client": scheduler,
        "baseline_work": "namespace objects of the tenant; per launch Secret + Service + pod, concurrently",
        "ours": ours_sum,
        "baseline": base_sum,
        "ours_server_side": summary_ms(server_s),
        "stages": {name: summary_ms(values) for name, values in stages.items() if values},
        "api_request_floor": summary_ms(me_s),
        "ratio": {k: ratio(ours_sum[k], base_sum[k]) for k in ("p50_ms", "p95_ms", "p99_ms")},
        "p50_extra_ms": extra["p50"],
        # CPU per launch of each part, launch and teardown (bench/cpu.py): what each side costs the machine.
        "cpu": {side: cpu.spent({}, used, wall_seconds=wall[side], per=n) for side, used in cpu_used.items()},
        "p99_extra_ms": extra["p99"],
        "goals": {
            f"p50 within {GOAL_P50_EXTRA_MS} ms of the raw API server": extra["p50"] <= GOAL_P50_EXTRA_MS,
            f"p99 within {GOAL_P99_EXTRA_MS} ms of the raw API server": extra["p99"] <= GOAL_P99_EXTRA_MS,
            f"N >= 200 launches ({n})": n >= 200,
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
