"""API throughput: instance list (first page and a deep page), detail and /me for a tenant with N instances
(default 100,000), at concurrency 16, on the same server (gunicorn, same workers and threads) in one run.

Why /me as the baseline: it is the cheapest endpoint that goes through everything an API call pays for
(middleware, Bearer token authentication, throttling, DRF rendering, one small query), so the difference
is what listing instances itself costs. /healthz skips authentication and DRF and would flatter nothing
but the middleware.

The deep page: before timing, the list is walked once by its `next` links (keyset cursors, WALK_LIMIT rows
a page) to the middle of the tenant's instances; the cursor found there is then requested like the first
page, 50 rows a page. The same rows read by `offset` (the old way, kept for clients written for it) are
timed too, for information only.

Queries per request are counted in-process (Django's test client under CaptureQueriesContext, same
settings and data): the list must issue as many queries at the deep page as at the first, for 1,000
instances as for N, and for a page of 200 as for 50 (no N+1, nothing that grows with the list).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from bench import common
from bench.common import Progress, percentile, ratio

DEFAULT_N = 100_000

CONCURRENCY = 16
PHASE_SECONDS = 8.0
WARMUP_SECONDS = 1.0
ROUNDS = 3
OTHER_TENANTS = 98
# The other tenants hold 19 x N rows (the tenant's are a twentieth of the table), at most this many: at
# the default N that is 1.1 million rows in all, seeded in minutes rather than a quarter of an hour.
OTHERS_MAX = 1_000_000
SMALL = 1000
PAGE = 50  # the list's default page
WALK_LIMIT = 200  # the untimed walk to the deep page reads the largest pages (a quarter of the requests)
GOAL_RATIO = 0.7  # of /me's requests a second (issue 20)


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
    rest = max(0, min(19 * n - SMALL, OTHERS_MAX))
    total = n + SMALL + rest
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
    return {"target": target, "small": small, "ids": ids, "total": copied, "n": n}


def _client(who: Any) -> Any:
    from rest_framework.test import APIClient

    api = APIClient(SERVER_NAME="localhost")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {who.token}")
    return api


def _query(link: str) -> str:
    """The query string of a `next` link (the server's absolute URL, host and all)."""
    return urlsplit(link).query


def deep_page(data: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Walk the tenant's list by its `next` links (untimed) to the middle: the deep page's cursor, its
    position, and whether its rows are the ones `offset` gives there (keyset and offset must agree)."""
    n, target = data["n"], data["target"]
    base = f"/api/v1/tenants/{target.slug}/instances"
    skip = (n // 2) // WALK_LIMIT * WALK_LIMIT  # rows before the deep page, a whole number of walked pages
    if skip < WALK_LIMIT:
        raise ValueError(f"--n must be at least {2 * WALK_LIMIT} for a deep page, not {n}")
    api = _client(target)
    path, seen, walked = f"{base}?{urlencode({'limit': WALK_LIMIT})}", 0, 0
    t0 = time.perf_counter()
    while seen < skip:
        response = api.get(path)
        assert response.status_code == 200, (path, response.status_code)
        body = response.json()
        seen, walked = seen + len(body["results"]), walked + 1
        if not body["next"]:
            raise RuntimeError(f"the list ended after {seen} rows, {n} expected")
        path = f"{base}?{_query(body['next'])}"
    cursor = parse_qs(_query(path))["cursor"][0]
    progress(f"deep page: {walked} pages of {WALK_LIMIT} walked in {time.perf_counter() - t0:.1f}s")
    by_cursor = api.get(f"{base}?{urlencode({'cursor': cursor})}").json()
    by_offset = api.get(f"{base}?{urlencode({'offset': skip})}").json()
    ids = [row["id"] for row in by_cursor["results"]]
    return {
        "cursor": cursor,
        "rows_before": skip,
        "page": skip // PAGE + 1,
        "pages_walked": walked,
        "rows": len(ids),
        "same_rows_as_offset": ids == [row["id"] for row in by_offset["results"]],
        "has_next": by_cursor["next"] is not None,
        "count": by_cursor["count"],
        "count_exact": by_cursor["count_exact"],
    }


def query_counts(data: dict[str, Any], deep: dict[str, Any]) -> dict[str, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(who: Any, path: str) -> int:
        api = _client(who)
        api.get(path)  # warm: first-use caches (content types, catalog) would count once otherwise
        with CaptureQueriesContext(connection) as ctx:
            response = api.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return len(ctx.captured_queries)

    target, small = data["target"], data["small"]
    base, base_small = f"/api/v1/tenants/{target.slug}/instances", f"/api/v1/tenants/{small.slug}/instances"
    cursor = urlencode({"cursor": deep["cursor"]})
    return {
        "me": count(target, "/api/v1/me"),
        "list_n_limit50": count(target, base),
        "list_1k_limit50": count(small, base_small),
        "list_n_limit200": count(target, f"{base}?limit=200"),
        "list_1k_limit200": count(small, f"{base_small}?limit=200"),
        "list_deep_limit50": count(target, f"{base}?{cursor}"),
        "list_deep_limit200": count(target, f"{base}?{cursor}&limit=200"),
        "list_offset_deep_limit50": count(target, f"{base}?offset={deep['rows_before']}"),
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


# Which query count of query_counts each timed endpoint is.
QUERIES_OF = {
    "me": "me",
    "list": "list_n_limit50",
    "list_deep": "list_deep_limit50",
    "detail": "detail",
    "list_offset_deep": "list_offset_deep_limit50",
}


def run(n: int, progress: Progress) -> dict[str, Any]:
    from bench import db
    from bench.stack import Stack

    db.reset(progress)
    data = _load(n, progress)
    deep = deep_page(data, progress)
    progress(
        f"deep page {deep['page']} (after {deep['rows_before']} rows): {deep['rows']} rows, "
        f"same as by offset: {deep['same_rows_as_offset']}; count {deep['count']} exact {deep['count_exact']}"
    )
    queries = query_counts(data, deep)
    progress(f"queries per request: {queries}")
    target = data["target"]
    ids = data["ids"]
    with Stack("api_throughput") as stack:
        url = stack.web()
        base = f"{url}/api/v1/tenants/{target.slug}/instances"
        deep_url = f"{base}?{urlencode({'cursor': deep['cursor']})}"
        offset_url = f"{base}?offset={deep['rows_before']}"
        endpoints: dict[str, Callable[[], str]] = {
            "me": lambda: f"{url}/api/v1/me",
            "list": lambda: base,
            "list_deep": lambda: deep_url,
            "detail": lambda: f"{base}/{random.choice(ids)}",  # noqa: S311
            "list_offset_deep": lambda: offset_url,  # informational: the old way to a deep page
        }
        for url_of in endpoints.values():
            hammer(url_of, target.headers(), WARMUP_SECONDS)
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
        "deep_page": {k: v for k, v in deep.items() if k != "cursor"},
    }
    for name, t in totals.items():
        figures[name] = {
            "rps": round(t["count"] / t["seconds"], 1),
            "p50_ms": round(percentile(t["latencies"], 50) * 1000, 1),
            "p99_ms": round(percentile(t["latencies"], 99) * 1000, 1),
            "errors": t["errors"],
            "queries": queries[QUERIES_OF[name]],
        }
    figures["queries"] = queries
    me = figures["me"]
    figures["ratio"] = {
        f"{name}_{figure}_vs_me": ratio(figures[name][figure], me[figure])
        for name in endpoints
        if name != "me"
        for figure in ("rps", "p99_ms")
    }
    figures["goals"] = goals(figures, n)
    return figures


def goals(figures: dict[str, Any], n: int) -> dict[str, bool]:
    q, r = figures["queries"], figures["ratio"]
    lists = ("list_n_limit50", "list_1k_limit50", "list_n_limit200", "list_1k_limit200")
    constant = len({q[k] for k in (*lists, "list_deep_limit50", "list_deep_limit200")}) == 1
    timed = ("me", "list", "list_deep", "detail", "list_offset_deep")
    return {
        f"list (first page) >= {GOAL_RATIO}x /me": r["list_rps_vs_me"] >= GOAL_RATIO,
        f"list (deep page, cursor) >= {GOAL_RATIO}x /me": r["list_deep_rps_vs_me"] >= GOAL_RATIO,
        f"queries per request constant (first vs deep page, 1k vs {n / 1000:g}k, 50 vs 200 a page)": constant,
        "no errors": all(figures[k]["errors"] == 0 for k in timed)
        and figures["deep_page"]["same_rows_as_offset"],
    }


def main() -> int:
    args = common.parser(
        "API throughput of instance list (first and deep page) and detail against /me.",
        DEFAULT_N,
        "instances of the tenant",
    ).parse_args()
    return common.run_main("api_throughput", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
