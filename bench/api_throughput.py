"""API throughput: instance list and detail for a tenant with N instances among 20*N in the database, at
concurrency 16, against GET /api/v1/me on the same server (gunicorn, same workers and threads).

Why /me as the baseline: it is the cheapest endpoint that goes through everything an API call pays for
(middleware, Bearer token authentication, throttling, DRF rendering, one small query), so the difference
is what listing instances itself costs. /healthz skips authentication and DRF and would flatter nothing
but the middleware.

Queries per request are counted in-process (Django's test client under CaptureQueriesContext, same
settings and data): the list must issue as many queries for 1,000 instances as for N, and for a page of
200 as for 50 (no N+1).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from bench import common
from bench.common import Progress, percentile, ratio

DEFAULT_N = 5000

CONCURRENCY = 16
PHASE_SECONDS = 8.0
ROUNDS = 3
OTHER_TENANTS = 98
SMALL = 1000


def _load(n: int, progress: Progress) -> dict[str, Any]:
    from apps.catalog.models import InstanceType, Region
    from apps.instances.models import Instance
    from bench import db, seed

    seed.catalog()
    region = Region.objects.get(slug="us-east-1")
    types = list(InstanceType.objects.order_by("slug"))
    target = seed.tenant("bench-api")
    small = seed.tenant("bench-api-1k")
    others = [seed.tenant(f"bench-api-other-{i}") for i in range(OTHER_TENANTS)]
    total = 20 * n
    rest = total - n - SMALL
    tick = progress.every(total, "instance rows copied", parts=5)
    live = ("running", "running", "running", "stopped")
    mixed = ("running", "stopped", "terminated", "running", "failed")

    def rows() -> Any:
        yield from seed.instance_rows(
            tenant=target.tenant,
            count=n,
            region=region,
            instance_type=types[0],
            created_by=target.user,
            states=live,
        )
        yield from seed.instance_rows(
            tenant=small.tenant,
            count=SMALL,
            region=region,
            instance_type=types[1],
            created_by=small.user,
            states=live,
        )
        per = rest // OTHER_TENANTS
        for i, other in enumerate(others):
            count = per if i < OTHER_TENANTS - 1 else rest - per * (OTHER_TENANTS - 1)
            yield from seed.instance_rows(
                tenant=other.tenant,
                count=count,
                region=region,
                instance_type=types[i % len(types)],
                created_by=other.user,
                states=mixed,
            )

    t0 = time.perf_counter()
    copied = seed.copy_rows(Instance, rows(), tick=tick)
    db.analyze()
    progress(f"{copied} instances copied in {time.perf_counter() - t0:.1f}s")
    ids = [str(i) for i in Instance.objects.filter(tenant=target.tenant).values_list("pk", flat=True)]
    return {"target": target, "small": small, "ids": ids, "total": copied}


def query_counts(data: dict[str, Any]) -> dict[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    def count(who: Any, path: str) -> int:
        api = APIClient(SERVER_NAME="localhost")
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {who.token}")
        api.get(path)  # warm: first-use caches (content types, catalog) would count once otherwise
        with CaptureQueriesContext(connection) as ctx:
            response = api.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return len(ctx.captured_queries)

    target, small = data["target"], data["small"]
    base, base_small = f"/api/v1/tenants/{target.slug}/instances", f"/api/v1/tenants/{small.slug}/instances"
    return {
        "me": count(target, "/api/v1/me"),
        "list_5k_limit50": count(target, base),
        "list_1k_limit50": count(small, base_small),
        "list_5k_limit200": count(target, f"{base}?limit=200"),
        "list_1k_limit200": count(small, f"{base_small}?limit=200"),
        "detail": count(target, f"{base}/{data['ids'][0]}"),
    }


def hammer(
    url_of: Callable[[], str], headers: dict[str, str], seconds: float
) -> tuple[int, list[float], int]:
    """CONCURRENCY clients sending requests back to back for `seconds`: (ok count, latencies, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        http = requests.Session()
        http.headers.update(headers)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            response = http.get(url_of(), timeout=60)
            if response.status_code == 200:
                mine.append(time.perf_counter() - t0)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), latencies, errors[0]


def run(n: int, progress: Progress) -> dict[str, Any]:
    from bench import db
    from bench.stack import Stack

    db.reset(progress)
    data = _load(n, progress)
    queries = query_counts(data)
    progress(f"queries per request: {queries}")
    target = data["target"]
    ids = data["ids"]
    with Stack("api_throughput") as stack:
        url = stack.web()
        base = f"{url}/api/v1/tenants/{target.slug}/instances"
        endpoints: dict[str, Callable[[], str]] = {
            "me": lambda: f"{url}/api/v1/me",
            "list": lambda: base,
            "detail": lambda: f"{base}/{random.choice(ids)}",  # noqa: S311
        }
        hammer(endpoints["list"], target.headers(), 2.0)  # warm-up
        totals: dict[str, dict[str, Any]] = {
            k: {"count": 0, "latencies": [], "errors": 0, "seconds": 0.0} for k in endpoints
        }
        for r in range(ROUNDS):
            for name, url_of in endpoints.items():
                count, latencies, errors = hammer(url_of, target.headers(), PHASE_SECONDS)
                totals[name]["count"] += count
                totals[name]["latencies"] += latencies
                totals[name]["errors"] += errors
                totals[name]["seconds"] += PHASE_SECONDS
            progress(
                f"round {r + 1}/{ROUNDS}: "
                + ", ".join(f"{k} {v['count'] / v['seconds']:.0f} rps" for k, v in totals.items())
            )
    figures: dict[str, Any] = {
        "instances_total": data["total"],
        "tenant_instances": n,
        "concurrency": CONCURRENCY,
    }
    for name, t in totals.items():
        figures[name] = {
            "rps": round(t["count"] / t["seconds"], 1),
            "p50_ms": round(percentile(t["latencies"], 50) * 1000, 1),
            "p99_ms": round(percentile(t["latencies"], 99) * 1000, 1),
            "errors": t["errors"],
            "queries": queries["me"]
            if name == "me"
            else queries["detail" if name == "detail" else "list_5k_limit50"],
        }
    figures["queries"] = queries
    figures["ratio"] = {
        "list_rps_vs_me": ratio(figures["list"]["rps"], figures["me"]["rps"]),
        "detail_rps_vs_me": ratio(figures["detail"]["rps"], figures["me"]["rps"]),
        "list_p99_vs_me": ratio(figures["list"]["p99_ms"], figures["me"]["p99_ms"]),
        "detail_p99_vs_me": ratio(figures["detail"]["p99_ms"], figures["me"]["p99_ms"]),
    }
    constant = (
        queries["list_5k_limit50"]
        == queries["list_1k_limit50"]
        == queries["list_5k_limit200"]
        == queries["list_1k_limit200"]
    )
    figures["goals"] = {
        "list >= half of /me's throughput": figures["ratio"]["list_rps_vs_me"] >= 0.5,
        "list queries constant (1k vs 5k instances, 50 vs 200 a page)": constant,
        "no errors": all(t["errors"] == 0 for t in totals.values()),
    }
    return figures


def main() -> int:
    args = common.parser(
        "API throughput of instance list and detail against /me.", DEFAULT_N, "instances of the tenant"
    ).parse_args()
    return common.run_main("api_throughput", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
