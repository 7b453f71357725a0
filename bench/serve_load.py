"""Serving under load: N concurrent clients for 60 s against the web server exactly as `make run` starts it
(scripts/web.sh: gunicorn with config/gunicorn.py, 2 workers x 4 threads, each worker's database pool as big
as its threads), first on a mixed workload, then on a trivial endpoint, same clients, same duration.

Mixed: every client belongs to one of 20 tenants (50 instances each) and loops over list (50 %), detail
(30 %), launch (10 %) and stop (10 %) of its tenant's instances. Launches go to a region whose capacity is
recorded but whose cluster is not connected, so they pass admission (quota, funds, capacity) and wait as
`pending`; stops of instances already stopping answer 409: the API's ordinary answers, counted by status
and error code. The trivial endpoint is
GET /api/v1/me (authentication, throttling, one small query), the cheapest call through the whole API.

What it proves: with 200 clients on 8 server threads and at most 8 database connections, requests wait
their turn (in gunicorn's connection queue, then for a pooled connection) and every one gets an answer:
zero 5xx and zero reset or refused connections, in both phases. Latency percentiles are over every answer
(any status). The servers' throttle is the test settings' (100000/min): the API's rate limit would turn
most of this into 429s, which measures the limiter, not the server.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests

from bench import common
from bench.common import Progress, percentile, ratio

DEFAULT_N = 200  # concurrent clients
SECONDS = 60.0
TENANTS = 20
INSTANCES_PER_TENANT = 50
WEB_WORKERS, WEB_THREADS = "2", "4"  # scripts/web.sh's defaults, as `make run` starts it
REGION = "us-east-1"
INSTANCE_TYPE = "cpu-4x"
TIMEOUT = 120  # seconds a client waits for an answer; none should come near it
MIX = (("list", 50), ("detail", 30), ("launch", 10), ("stop", 10))


class Tally:
    """Answers of one phase, from every client: status counts, latencies, connection failures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()  # reset, refused, timeout: no HTTP answer at all

    def add(self, codes: Counter[str], latencies: list[float], failures: Counter[str]) -> None:
        with self.lock:
            self.codes.update(codes)
            self.latencies.extend(latencies)
            self.failures.update(failures)

    def figures(self, seconds: float) -> dict[str, Any]:
        answered = sum(self.codes.values())
        status: Counter[str] = Counter()
        for key, n in self.codes.items():
            status[key.split(" ")[1]] += n
        return {
            "requests": answered,
            "rps": round(answered / seconds, 1),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 1),
            "max_ms": round(max(self.latencies, default=0.0) * 1000, 1),
            "status": dict(sorted(status.items())),
            "by_kind": dict(sorted(self.codes.items())),
            "5xx": sum(n for code, n in status.items() if code.startswith("5")),
            "connection_failures": dict(self.failures),
        }


def refusal(response: requests.Response) -> str:
    """' <code>' of a 4xx's error envelope (why it was refused), else ''."""
    if not 400 <= response.status_code < 500:
        return ""
    try:
        return f" {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return " (no envelope)"


def failure_kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    text = str(exc).lower()
    if "reset" in text or "aborted" in text or "remote end closed" in text:
        return "reset"
    if "refused" in text:
        return "refused"
    return type(exc).__name__


Request = Callable[[requests.Session, int, random.Random], Any]


def drive(clients: int, seconds: float, request: Request) -> Tally:
    """`clients` threads, each with its own keep-alive session, sending requests back to back for
    `seconds`."""
    tally = Tally()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        rng = random.Random(index)  # noqa: S311 - a workload mix, not a secret
        http = requests.Session()
        codes: Counter[str] = Counter()
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        start.wait()
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                kind, response = request(http, index, rng)
            except requests.RequestException as exc:
                failures[failure_kind(exc)] += 1
                http = requests.Session()  # a broken connection is not reused
                continue
            latencies.append(time.perf_counter() - t0)
            codes[f"{kind} {response.status_code}{refusal(response)}"] += 1
        tally.add(codes, latencies, failures)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return tally


def _seed(progress: Progress) -> list[dict[str, Any]]:
    from django.utils import timezone

    from apps.catalog.models import InstanceType, Region, RegionCapacity
    from apps.instances.models import Instance
    from bench import db, seed

    seed.catalog()
    region = Region.objects.get(slug=REGION)
    # Capacity as the operator last reported it, but no cluster connected: launches are admitted (quota,
    # funds, capacity) and then wait as pending; nothing in the sandbox is touched.
    RegionCapacity.objects.update_or_create(
        region=region,
        gpu_type=None,
        defaults={"gpus": 0, "vcpu": 10**6, "memory_gib": 10**7, "observed_at": timezone.now()},
    )
    instance_type = InstanceType.objects.get(slug=INSTANCE_TYPE)
    tenants = [seed.tenant(f"bench-serve-{i}") for i in range(TENANTS)]

    def rows() -> Any:
        for who in tenants:
            yield from seed.instance_rows(
                tenant=who.tenant,
                count=INSTANCES_PER_TENANT,
                region=region,
                instance_type=instance_type,
                created_by=who.user,
                states=("running",),
            )

    seed.copy_rows(Instance, rows())
    db.analyze()
    out = []
    for who in tenants:
        ids = [str(i) for i in Instance.objects.filter(tenant=who.tenant).values_list("pk", flat=True)]
        out.append({"slug": who.slug, "headers": who.headers(), "ids": ids})
    progress(f"{TENANTS} tenants with {INSTANCES_PER_TENANT} instances each")
    return out


def mixed_request(url: str, tenants: list[dict[str, Any]]) -> Callable[..., Any]:
    kinds = [kind for kind, weight in MIX for _ in range(weight)]

    def request(http: requests.Session, index: int, rng: random.Random) -> Any:
        who = tenants[index % len(tenants)]
        base = f"{url}/api/v1/tenants/{who['slug']}/instances"
        kind = rng.choice(kinds)
        if kind == "list":
            return kind, http.get(base, headers=who["headers"], timeout=TIMEOUT)
        if kind == "detail":
            return kind, http.get(f"{base}/{rng.choice(who['ids'])}", headers=who["headers"], timeout=TIMEOUT)
        if kind == "stop":
            stop = f"{base}/{rng.choice(who['ids'])}/stop"
            return kind, http.post(stop, headers=who["headers"], timeout=TIMEOUT)
        body = {"name": f"load-{uuid.uuid4().hex[:12]}", "instance_type": INSTANCE_TYPE, "region": REGION}
        headers = {**who["headers"], "Idempotency-Key": str(uuid.uuid4())}
        return kind, http.post(base, json={**body, "image": "cuda-12"}, headers=headers, timeout=TIMEOUT)

    return request


def trivial_request(url: str, tenants: list[dict[str, Any]]) -> Callable[..., Any]:
    def request(http: requests.Session, index: int, rng: random.Random) -> Any:
        headers = tenants[index % len(tenants)]["headers"]
        return "me", http.get(f"{url}/api/v1/me", headers=headers, timeout=TIMEOUT)

    return request


def run(n: int, progress: Progress) -> dict[str, Any]:
    from bench import db
    from bench.stack import Stack

    db.reset(progress)
    tenants = _seed(progress)
    with Stack("serve_load") as stack:
        url = stack.web_as_make_run(workers=WEB_WORKERS, threads=WEB_THREADS)
        stack.worker(concurrency=2)  # as `make run`: launches and stops queue reconcile tasks
        progress(f"web {url} (scripts/web.sh, {WEB_WORKERS} workers x {WEB_THREADS} threads) and a worker up")
        drive(min(n, 16), 3.0, trivial_request(url, tenants))  # warm-up: imports, pools, caches
        mixed = drive(n, SECONDS, mixed_request(url, tenants))
        progress(f"mixed: {mixed.figures(SECONDS)}")
        trivial = drive(n, SECONDS, trivial_request(url, tenants))
        progress(f"trivial: {trivial.figures(SECONDS)}")
    ours, baseline = mixed.figures(SECONDS), trivial.figures(SECONDS)
    return {
        "clients": n,
        "seconds": SECONDS,
        "server": {"workers": int(WEB_WORKERS), "threads": int(WEB_THREADS), "started_by": "scripts/web.sh"},
        "mix": dict(MIX),
        "ours": ours,
        "baseline": baseline,
        "ratio": {
            "rps": ratio(ours["rps"], baseline["rps"]),
            "p99_ms": ratio(ours["p99_ms"], baseline["p99_ms"]),
        },
        "goals": {
            "zero 5xx (mixed and trivial)": ours["5xx"] == 0 and baseline["5xx"] == 0,
            "zero reset, refused or timed-out connections": not ours["connection_failures"]
            and not baseline["connection_failures"],
            "every kind of request answered (list, detail, launch, stop)": all(
                any(key.startswith(f"{kind} ") for key in ours["by_kind"]) for kind, _ in MIX
            ),
        },
        "load_average_after": common.load_average(),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    args = common.parser("Serving under load, against a trivial endpoint.", DEFAULT_N, "clients").parse_args()
    return common.run_main("serve_load", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
