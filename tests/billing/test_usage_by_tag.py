"""Usage by tag (GET .../billing/usage with group_by=tag:<key> and tag=<key>:<value>): read from the tags the
ledger rows carry as metered; the usage without the tag in one group of key null; filters are ANDed; bad
input is a 400 naming the parameter; another tenant's rows never count; the queries do not grow with the
data."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing.models import UsageRecord
from apps.billing.selectors import month_start, usage_report
from apps.tenants.models import Tenant
from tests.conftest import Actor
from tests.factories import TenantFactory
from tests.instances.cluster_helpers import cluster_row
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

_ids = itertools.count()


def row(
    tenant: Tenant,
    amount: str,
    tags: dict[str, str],
    *,
    seconds: int = 60,
    resource_id: str | None = None,
    start: datetime | None = None,
) -> UsageRecord:
    """A ledger row of `amount` carrying `tags`, starting an hour into this month (or at `start`)."""
    n = next(_ids)
    begin = start or month_start(timezone.now()) + timedelta(hours=1, minutes=n)
    return UsageRecord.objects.create(
        id=f"tag-test:{n}",
        tenant=tenant,
        resource_type="instance",
        resource_id=resource_id or f"tag-test-{n}",
        meter="instance_seconds:gpu-h100x1",
        period=DateTimeTZRange(begin, begin + timedelta(seconds=seconds), "[)"),
        quantity_seconds=seconds,
        unit_price_per_hour=Decimal("1.0000"),
        amount=Decimal(amount),
        tags=tags,
    )


@pytest.fixture
def actor(make_actor: Any) -> Actor:
    return make_actor(tenant=TenantFactory())


def range_params() -> dict[str, str]:
    start = month_start(timezone.now())
    return {"from": start.isoformat(), "to": (start + timedelta(days=40)).isoformat()}


def get(actor: Actor, **params: Any) -> Any:
    response = actor.token_client().get(actor.url("/billing/usage"), {**range_params(), **params})
    assert response.status_code == 200, response.json()
    return response.json()


def test_grouped_by_a_tag_each_value_is_a_group_and_the_untagged_usage_comes_last(actor: Actor) -> None:
    row(actor.tenant, "1.500000", {"team": "ml", "env": "prod"})
    row(actor.tenant, "0.500000", {"team": "ml"})
    row(actor.tenant, "2.000000", {"team": "research"})
    row(actor.tenant, "0.250000", {"team": ""})
    row(actor.tenant, "4.000000", {"env": "prod"})
    row(actor.tenant, "0.125000", {})
    body = get(actor, group_by="tag:Team")
    assert body["group_by"] == "tag:team" and body["tags"] == {}
    assert [(g["key"], g["name"], g["amount"], g["quantity_seconds"]) for g in body["results"]] == [
        ("", "", "0.250000", 60),
        ("ml", "ml", "2.000000", 120),
        ("research", "research", "2.000000", 60),
        (None, "untagged", "4.125000", 120),
    ]
    assert body["total"] == "8.375000"
    assert all(g["cluster"] is None and g["rank"] is None for g in body["results"])


def test_a_tag_filter_keeps_only_the_usage_carrying_it_and_repeated_filters_must_all_hold(
    actor: Actor,
) -> None:
    row(actor.tenant, "1.000000", {"team": "ml", "env": "prod"})
    row(actor.tenant, "2.000000", {"team": "ml", "env": "dev"})
    row(actor.tenant, "4.000000", {"team": "research", "env": "prod"})
    assert get(actor, tag="team:ml")["total"] == "3.000000"
    both = get(actor, tag=["team:ml", "env:prod"], group_by="instance")
    assert both["tags"] == {"team": "ml", "env": "prod"} and both["total"] == "1.000000"
    assert len(both["results"]) == 1
    assert get(actor, tag="team:nobody")["results"] == []
    # Filtered and grouped by another tag.
    by_env = get(actor, tag="team:ml", group_by="tag:env")["results"]
    assert [(g["key"], g["amount"]) for g in by_env] == [("dev", "2.000000"), ("prod", "1.000000")]


def test_a_row_keeps_the_tags_it_was_metered_with(actor: Actor) -> None:
    """A tag changed later does not move usage already in the ledger: the rows carry their own tags."""
    row(actor.tenant, "1.000000", {"team": "ml"}, resource_id="same")
    row(actor.tenant, "2.000000", {"team": "research"}, resource_id="same")
    results = get(actor, group_by="tag:team")["results"]
    assert [(g["key"], g["amount"]) for g in results] == [("ml", "1.000000"), ("research", "2.000000")]


def test_another_tenants_usage_never_counts(actor: Actor) -> None:
    row(actor.tenant, "1.000000", {"team": "ml"})
    row(TenantFactory(), "9.000000", {"team": "ml"})
    assert get(actor, tag="team:ml")["total"] == "1.000000"
    assert [g["amount"] for g in get(actor, group_by="tag:team")["results"]] == ["1.000000"]


def test_cluster_subtotals_follow_the_tag_filter(actor: Actor) -> None:
    cluster = cluster_row(tenant=actor.tenant, created_by=actor.user, name="llm")
    nodes = list(cluster.nodes.order_by("rank"))
    row(actor.tenant, "1.000000", {"team": "ml"}, resource_id=str(nodes[0].pk))
    row(actor.tenant, "2.000000", {"team": "research"}, resource_id=str(nodes[1].pk))
    for group_by in ("instance_type", "instance"):
        clusters = get(actor, tag="team:ml", group_by=group_by)["clusters"]
        assert [(c["name"], c["node_count"], c["amount"]) for c in clusters] == [("llm", 1, "1.000000")]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"group_by": "tag:"}, "group_by", "keys are 1-63 characters"),
        ({"group_by": "tag:bad key"}, "group_by", "'bad key'"),
        ({"group_by": "tag:gpucloud.x"}, "group_by", "reserved"),
        ({"group_by": "label:team"}, "group_by", "tag:<key>"),
        ({"tag": "team"}, "tag", "<key>:<value>"),
        ({"tag": "bad key:x"}, "tag", "'bad key'"),
        ({"tag": "team:a\x01"}, "tag", "control characters"),
        ({"tag": ["team:ml", "team:research"]}, "tag", "two values"),
    ],
)
def test_bad_tag_parameters_are_a_400_naming_them(
    actor: Actor, params: dict[str, Any], field: str, says: str
) -> None:
    response = actor.token_client().get(actor.url("/billing/usage"), params)
    error = assert_error(response, 400, "invalid", field)
    assert says in error["fields"][field][0]


def test_the_selector_groups_the_same_way(actor: Actor) -> None:
    row(actor.tenant, "1.000000", {"team": "ml"})
    row(actor.tenant, "3.000000", {})
    start = month_start(timezone.now())
    results = usage_report(
        tenant=actor.tenant, start=start, end=start + timedelta(days=40), group_by="tag:team", tags=None
    )
    assert [(r["key"], r["amount"]) for r in results] == [
        ("ml", Decimal("1.000000")),
        (None, Decimal("3.000000")),
    ]


def test_the_queries_do_not_grow_with_the_rows_or_the_values(actor: Actor) -> None:
    client = actor.token_client()
    url = actor.url("/billing/usage")
    params = {**range_params(), "group_by": "tag:team", "tag": "env:prod"}
    row(actor.tenant, "1.000000", {"team": "a", "env": "prod"})
    client.get(url, params)  # warm up: the token's first use is recorded once

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url, params).status_code == 200
        return len(ctx.captured_queries)

    before = count()
    for n in range(20):
        row(actor.tenant, "1.000000", {"team": f"t{n}", "env": "prod"})
    assert count() == before
