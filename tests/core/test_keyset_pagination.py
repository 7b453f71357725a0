"""Keyset pagination (apps/core/pagination.py KeysetPagination) on the instance list: a signed cursor
walks every row exactly once whatever is inserted between pages, a bad cursor answers 400 naming it, the
tenant scope holds whatever the cursor says, the count is capped, and a request costs the same number of
queries on the first page as on a deep one, for 1,000 rows as for 10,000."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.services import audit_record
from apps.catalog.models import InstanceType, Region
from apps.core import pagination
from apps.core.pagination import CURSOR_SALT, KeysetPagination, _Key
from apps.instances.models import Instance, InstanceEvent, frozen_terms
from tests.support.factories import volume_row

pytestmark = pytest.mark.django_db


def _bulk(actor: Any, count: int, *, start: int = 0, state: str = "running", same_time: bool = False) -> None:
    """`count` instance rows at once (bulk_create: 10,000 one by one would take minutes). With same_time
    every row has one created_at, so only the id orders them."""
    region = Region.objects.get(slug="us-east-1")
    itype = InstanceType.objects.select_related("gpu_type").get(slug="gpu-h100x1")
    terms, now = frozen_terms(itype), timezone.now()
    Instance.objects.bulk_create(
        Instance(
            tenant=actor.tenant,
            name=f"row-{i}",
            region=region,
            instance_type=itype,
            image_reference="nvcr.io/nvidia/pytorch:24.08-py3",
            state=state,
            holds_compute=False,
            created_by=actor.user,
            created_at=now if same_time else now - timedelta(seconds=i),
            **terms,
        )
        for i in range(start, start + count)
    )


def _cursor(link: str) -> str:
    return parse_qs(urlsplit(link).query)["cursor"][0]


def _walk(client: Any, url: str, params: dict[str, str], between: Any = None) -> list[str]:
    seen: list[str] = []
    response = client.get(url, params)
    while True:
        assert response.status_code == 200, response.json()
        body = response.json()
        seen += [row["id"] for row in body["results"]]
        if between is not None:
            between()
        if not body["next"]:
            return seen
        assert "offset" not in body["next"]
        response = client.get(body["next"])


@pytest.mark.parametrize("same_time", [False, True])
def test_the_cursor_walks_every_row_once_with_inserts_between_pages(owner, catalog, same_time):
    _bulk(owner, 23, same_time=same_time)
    inserted = iter(range(100, 200))
    # Newest first: rows launched while the client pages land before its position, never on a later page.
    walked = _walk(
        owner.token_client(),
        owner.url("/instances"),
        {"limit": "5"},
        between=lambda: _bulk(owner, 1, start=next(inserted), same_time=same_time),
    )
    first = set(Instance.objects.filter(tenant=owner.tenant, name__regex=r"^row-([0-9]|1[0-9]|2[0-2])$"))
    assert len(walked) == len(set(walked))
    assert {str(i.pk) for i in first} <= set(walked)


@pytest.mark.parametrize("ordering", ["name", "-name", "state", "created_at", "-created_at"])
def test_every_ordering_walks_in_order_and_back(owner, catalog, ordering):
    _bulk(owner, 12)
    _bulk(owner, 5, start=50, state="stopped")
    client, url = owner.token_client(), owner.url("/instances")
    expected = [
        str(pk)
        for pk in Instance.objects.filter(tenant=owner.tenant)
        .order_by(ordering, "id")
        .values_list("pk", flat=True)
    ]
    assert _walk(client, url, {"limit": "4", "ordering": ordering}) == expected
    # Back from the last page through the previous links: the same pages, newest page first.
    body = client.get(url, {"limit": "4", "ordering": ordering}).json()
    pages = [body["results"]]
    while body["next"]:
        body = client.get(body["next"]).json()
        pages.append(body["results"])
    back = [body["results"]]
    while body["previous"]:
        body = client.get(body["previous"]).json()
        back.append(body["results"])
    assert back[::-1] == pages


def test_offset_still_pages_as_before(owner, catalog):
    _bulk(owner, 7)
    client, url = owner.token_client(), owner.url("/instances")
    body = client.get(url, {"limit": "3", "offset": "3"}).json()
    expected = [str(pk) for pk in Instance.objects.filter(tenant=owner.tenant).values_list("pk", flat=True)]
    assert [row["id"] for row in body["results"]] == expected[3:6]
    assert parse_qs(urlsplit(body["next"]).query)["offset"] == ["6"]
    assert parse_qs(urlsplit(body["previous"]).query)["offset"] == ["0"]
    last = client.get(body["next"]).json()
    assert [row["id"] for row in last["results"]] == expected[6:]
    assert last["next"] is None
    assert (last["count"], last["count_exact"]) == (7, True)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        signing.dumps({"m": "instances.instance", "o": ["-created_at", "id"], "v": ["x", "y"]}, salt="other"),
        signing.dumps(
            {"m": "instances.instance", "o": ["-created_at", "id"], "v": ["not a time", "y"]},
            salt=CURSOR_SALT,
        ),
        signing.dumps({"m": "instances.instance", "o": ["-created_at", "id"], "v": []}, salt=CURSOR_SALT),
        signing.dumps(
            {"m": "audit.auditevent", "o": ["-created_at", "id"], "v": ["2026-01-01T00:00:00+00:00", "1"]},
            salt=CURSOR_SALT,
        ),
        signing.dumps(["a list"], salt=CURSOR_SALT),
    ],
)
def test_a_bad_cursor_is_a_400_naming_it(owner, catalog, cursor):
    _bulk(owner, 3)
    response = owner.token_client().get(owner.url("/instances"), {"cursor": cursor})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["cursor"]


def test_a_tampered_cursor_is_a_400(owner, catalog):
    _bulk(owner, 6)
    client, url = owner.token_client(), owner.url("/instances")
    cursor = _cursor(client.get(url, {"limit": "2"}).json()["next"])
    payload, signature = cursor.rsplit(":", 1)
    tampered = f"{payload}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert client.get(url, {"cursor": tampered}).status_code == 400


def test_a_cursor_for_another_ordering_or_with_offset_is_a_400(owner, catalog):
    _bulk(owner, 6)
    client, url = owner.token_client(), owner.url("/instances")
    cursor = _cursor(client.get(url, {"limit": "2"}).json()["next"])
    other = client.get(url, {"cursor": cursor, "ordering": "name"})
    assert other.status_code == 400
    assert list(other.json()["error"]["fields"]) == ["cursor"]
    both = client.get(url, {"cursor": cursor, "offset": "2"})
    assert both.status_code == 400
    assert list(both.json()["error"]["fields"]) == ["cursor"]


def test_another_tenants_cursor_reveals_none_of_its_rows(owner, make_actor, catalog):
    other = make_actor()
    _bulk(other, 6)
    _bulk(owner, 6, start=100)
    theirs = _cursor(other.token_client().get(other.url("/instances"), {"limit": "2"}).json()["next"])
    response = owner.token_client().get(owner.url("/instances"), {"cursor": theirs, "limit": "50"})
    assert response.status_code == 200  # a position, not a key: read against the caller's own rows
    mine = {str(pk) for pk in Instance.objects.filter(tenant=owner.tenant).values_list("pk", flat=True)}
    assert {row["id"] for row in response.json()["results"]} <= mine


def test_the_count_is_capped(owner, catalog, monkeypatch):
    _bulk(owner, 12)
    client, url = owner.token_client(), owner.url("/instances")
    monkeypatch.setattr(KeysetPagination, "COUNT_CAP", 12)
    assert {k: client.get(url).json()[k] for k in ("count", "count_exact")} == {
        "count": 12,
        "count_exact": True,
    }
    monkeypatch.setattr(KeysetPagination, "COUNT_CAP", 11)
    with CaptureQueriesContext(connection) as ctx:
        body = client.get(url).json()
    assert (body["count"], body["count_exact"]) == (11, False)
    counts = [q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1
    assert "LIMIT 12" in counts[0]  # it stops at the cap + 1, not a COUNT(*) over every row


def test_the_count_is_capped_at_a_thousand(owner, catalog):
    _bulk(owner, 1_000)
    client, url = owner.token_client(), owner.url("/instances")
    body = client.get(url, {"limit": "1"}).json()
    assert (body["count"], body["count_exact"]) == (1_000, True)
    _bulk(owner, 1, start=5_000)
    body = client.get(url, {"limit": "1"}).json()
    assert (body["count"], body["count_exact"]) == (1_000, False)


def _queries(client: Any, url: str, params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    client.get(url, params)  # first-use caches (content types) would count once otherwise
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.json()


def _deep(client: Any, url: str, pages: int) -> str:
    body = client.get(url, {"limit": "200"}).json()
    for _ in range(pages):
        body = client.get(body["next"]).json()
    return body["next"]


def test_queries_per_request_are_constant(owner, make_actor, catalog):
    small, big = make_actor(), owner
    _bulk(small, 1_000)
    _bulk(big, 10_000)
    counts = {
        "small first": _queries(small.token_client(), small.url("/instances"))[0],
        "big first": _queries(big.token_client(), big.url("/instances"))[0],
        "big first 200": _queries(big.token_client(), big.url("/instances"), {"limit": "200"})[0],
        "small deep": _queries(small.token_client(), _deep(small.token_client(), small.url("/instances"), 3))[
            0
        ],
    }
    deep_count, deep = _queries(big.token_client(), _deep(big.token_client(), big.url("/instances"), 40))
    counts["big deep"] = deep_count
    assert len(deep["results"]) == 200 and deep["next"]
    assert len(set(counts.values())) == 1, counts


# The partial indexes that leave terminated rows out. On a settled table the planner takes
# instance_tenant_live_order_idx; in the full suite the table carries the dead rows of earlier tests'
# rolled-back inserts, its estimates change, and it has taken the other two. Any of them keeps the tenant's
# terminated history out of the list's reads; the full order index or a table scan would not.
LIVE_INDEXES = ("instance_tenant_live_order_idx", "instance_quota_rows_idx", "instance_live_state_idx")


def test_the_page_and_the_count_walk_the_live_instances_index(owner, make_actor, catalog):
    """A tenant whose history is mostly terminated instances, among others with live ones: the default
    list (live only) reads the page and the count along a partial index of live instances (migration 0006
    adds the one in the list's order), without visiting the tenant's terminated rows."""
    _bulk(make_actor(), 5_000)
    _bulk(owner, 6_000, state="terminated")
    _bulk(owner, 300, start=10_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE instances_instance")
    client, url = owner.token_client(), owner.url("/instances")
    deep = client.get(client.get(url).json()["next"]).json()["next"]
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(deep).status_code == 200
    listed = [q["sql"] for q in ctx.captured_queries if '"instances_instance"' in q["sql"]]
    assert len(listed) == 2  # the capped count and the page
    for sql in listed:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            plan = json.dumps(cursor.fetchone()[0])
        assert any(index in plan for index in LIVE_INDEXES), plan
        assert "instance_tenant_order_idx" not in plan, plan


def _estimated_rows(queryset: Any) -> float:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        return cursor.fetchone()[0][0]["Plan"]["Plan Rows"]


@pytest.mark.parametrize("backward", [False, True])
def test_the_planner_expects_as_many_rows_after_a_cursor_as_its_bound_gives(
    owner, make_actor, catalog, backward
):
    """PostgreSQL estimates the rows after a cursor as those within the first key's bound. The expanded
    row comparison (`a < x OR (a = x AND b > y)` under `a <= x`) made it multiply the bound's selectivity
    by itself: at the middle of a tenant's long history it expected a handful of rows and chose to fetch
    and sort every row after the cursor instead of reading the next page along the index (50,000 rows
    for a deep page of a 100,000-instance tenant, bench/api_throughput.py)."""
    _bulk(make_actor(), 3_000)
    _bulk(owner, 3_000, start=3_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE instances_instance")
    keys = [_Key(Instance._meta.get_field("created_at"), True), _Key(Instance._meta.pk, False)]
    live = Instance.objects.filter(tenant=owner.tenant).exclude(state="terminated")
    middle = live.order_by("-created_at", "id")[1_500]
    bound = {f"created_at__{'gte' if backward else 'lte'}": middle.created_at}
    after = pagination._after(keys, [middle.created_at, middle.pk], backward=backward)
    assert live.filter(after).count() == (
        1_500 if backward else 1_499
    )  # the cursor's own row is not after it
    assert _estimated_rows(live.filter(after)) >= 0.9 * _estimated_rows(live.filter(**bound))


def test_an_instances_events_page_by_cursor_oldest_first(owner, catalog):
    _bulk(owner, 1)
    instance = Instance.objects.get(tenant=owner.tenant)
    at = timezone.now()
    InstanceEvent.objects.bulk_create(
        InstanceEvent(instance=instance, kind="system", name=f"e{i}", created_at=at) for i in range(7)
    )
    client, url = owner.token_client(), owner.url(f"/instances/{instance.pk}/events")
    names, body = [], client.get(url, {"limit": "3"}).json()
    names += [event["name"] for event in body["results"]]
    while body["next"]:
        assert "cursor=" in body["next"]
        body = client.get(body["next"]).json()
        names += [event["name"] for event in body["results"]]
    assert names == [f"e{i}" for i in range(7)]  # one created_at: the id keeps them in the order written


def _audit_events(actor: Any, n: int) -> None:
    for i in range(n):
        audit_record(actor=actor.user, action="test.event", tenant=actor.tenant, changes={"i": i})


def _volumes(actor: Any, n: int) -> None:
    for i in range(n):
        volume_row(actor.tenant, name=f"vol-{i}", size_gib=10 + i % 3)


@pytest.mark.parametrize(
    ("suffix", "make", "ordering"),
    [
        ("/audit-events", _audit_events, None),
        ("/volumes", _volumes, "size_gib"),
        ("/volumes", _volumes, None),
    ],
)
def test_the_audit_log_and_volumes_page_by_cursor(owner, catalog, suffix, make, ordering):
    make(owner, 7)
    client, url = owner.token_client(), owner.url(suffix)
    params = {"limit": "3", **({"ordering": ordering} if ordering else {})}
    everything = client.get(url, {**params, "limit": "200"}).json()["results"]
    body = client.get(url, params).json()
    walked = list(body["results"])
    while body["next"]:
        assert "cursor=" in body["next"]
        body = client.get(body["next"]).json()
        walked += body["results"]
    assert [row["id"] for row in walked] == [row["id"] for row in everything]
    assert len(walked) >= 7 and body["count_exact"] is True
