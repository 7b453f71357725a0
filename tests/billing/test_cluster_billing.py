"""A cluster's bill is the sum of its nodes: each node is metered like any instance, and the usage API and the
invoice group the nodes' lines under the cluster (docs/billing.md "Clusters")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.billing import metering
from apps.billing.invoices import periods, rendering
from apps.billing.invoices.models import InvoiceLine
from apps.billing.invoices.services import invoice_close
from apps.billing.models import UsageRecord
from apps.catalog.models import InstanceType, Region
from apps.instances.models import Cluster, Instance, InstanceEvent
from apps.tenants.roles import Role
from tests.support.factories import instance_row

pytestmark = pytest.mark.django_db

NODE_PRICE = Decimal("20.0000")  # per node and hour: 60 s are 0.333333, 600 s 3.333333 in the ledger
SINGLE_PRICE = Decimal("2.0000")
# What each node ran, in seconds, from the start of an hour: less than an hour, so one row each.
NODE_SECONDS = (600, 1830)


def last_month() -> Any:
    return periods.previous_month(periods.month_of(timezone.now()))


def start_of_usage() -> datetime:
    """3 days into last month, 10:00 UTC: a minute boundary, so the ledger cuts whole 60 s windows."""
    month = last_month()
    return datetime(month.year, month.month, 3, 10, tzinfo=UTC)


def ran(instance: Instance, start: datetime, seconds: int) -> None:
    """The timeline of an instance billed from `start` for `seconds` (its pod held its GPUs), then stopped;
    metered as the ledger task does."""
    InstanceEvent.objects.create(
        instance=instance,
        kind="observation",
        name="pod_started",
        from_state="provisioning",
        to_state="running",
        created_at=start,
        billable=True,
    )
    InstanceEvent.objects.create(
        instance=instance,
        kind="action",
        name="stop",
        from_state="running",
        to_state="stopping",
        created_at=start + timedelta(seconds=seconds),
    )
    metering.meter_instance(instance)


def ledger_amount(seconds: int, price: Decimal) -> Decimal:
    """The ledger's exact figure for `seconds` from the start of an hour: one row per hour (to each hourly
    checkpoint) and one for the rest, each rounded on its own."""
    whole, rest = divmod(seconds, 3600)
    return whole * metering.amount_for(3600, price) + (metering.amount_for(rest, price) if rest else 0)


def make_cluster(actor: Any, name: str, seconds: tuple[int, ...] = NODE_SECONDS) -> Cluster:
    """A cluster and its nodes written directly (no admission), each node billed for its `seconds`."""
    region = Region.objects.get(slug="us-east-1")
    itype = InstanceType.objects.select_related("gpu_type").get(slug="gpu-h100x8")
    cluster = Cluster.objects.create(
        tenant=actor.tenant,
        name=name,
        region=region,
        instance_type=itype,
        node_count=len(seconds),
        price_per_hour=NODE_PRICE,
        image_reference="nvcr.io/nvidia/pytorch:24.08-py3",
        state="stopped",
        created_by=actor.user,
    )
    for rank, node_seconds in enumerate(seconds):
        node = instance_row(
            tenant=actor.tenant,
            instance_type=itype,
            region=region,
            created_by=actor.user,
            name=f"{name}-{rank}",
            state="stopped",
            price_per_hour=NODE_PRICE,
            cluster=cluster,
            rank=rank,
        )
        ran(node, start_of_usage() + timedelta(hours=rank), node_seconds)
    return cluster


def make_single(actor: Any, name: str = "solo", seconds: int = 3600) -> Instance:
    instance = instance_row(
        tenant=actor.tenant,
        instance_type=InstanceType.objects.select_related("gpu_type").get(slug="gpu-h100x1"),
        region=Region.objects.get(slug="us-east-1"),
        created_by=actor.user,
        name=name,
        state="stopped",
        price_per_hour=SINGLE_PRICE,
    )
    ran(instance, start_of_usage() + timedelta(days=1), seconds)
    return instance


@pytest.fixture
def world(owner, catalog):
    cluster = make_cluster(owner, "train-a")
    single = make_single(owner)
    return cluster, single


def usage(actor: Any, group_by: str) -> dict[str, Any]:
    start, end = periods.bounds(last_month())
    response = actor.token_client().get(
        actor.url("/billing/usage"),
        {"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by},
    )
    assert response.status_code == 200, response.content
    return response.json()


# --- the ledger ---------------------------------------------------------------------------------------


def test_each_node_is_billed_like_an_instance_and_the_cluster_is_their_sum(world):
    cluster, _ = world
    nodes = list(cluster.nodes.order_by("rank"))

    for node, seconds in zip(nodes, NODE_SECONDS, strict=True):
        rows = UsageRecord.objects.filter(resource_type="instance", resource_id=str(node.pk))
        assert sum(r.quantity_seconds for r in rows) == seconds
        assert sum(r.amount for r in rows) == ledger_amount(seconds, NODE_PRICE)
        assert {r.meter for r in rows} == {"instance_seconds:gpu-h100x8"}
    # One row each, rounded once (60-second rows made these 3.333330 and 10.166657).
    assert ledger_amount(600, NODE_PRICE) == Decimal("3.333333")
    assert ledger_amount(1830, NODE_PRICE) == Decimal("10.166667")


# --- the usage API ------------------------------------------------------------------------------------


def test_usage_per_instance_names_the_cluster_of_each_node_and_sums_it(owner, world):
    cluster, single = world

    body = usage(owner, "instance")

    by_key = {row["key"]: row for row in body["results"]}
    nodes = list(cluster.nodes.order_by("rank"))
    node_rows = [by_key[str(node.pk)] for node in nodes]
    assert [(r["name"], r["cluster"], r["cluster_name"], r["rank"]) for r in node_rows] == [
        ("train-a-0", str(cluster.pk), "train-a", 0),
        ("train-a-1", str(cluster.pk), "train-a", 1),
    ]
    assert [r["quantity_seconds"] for r in node_rows] == list(NODE_SECONDS)
    assert [Decimal(r["amount"]) for r in node_rows] == [Decimal("3.333333"), Decimal("10.166667")]

    assert body["clusters"] == [
        {
            "id": str(cluster.pk),
            "name": "train-a",
            "node_count": 2,
            "quantity_seconds": 2430,
            "quantity_hours": "0.675000",
            "amount": "13.500000",
        }
    ]
    assert Decimal(body["clusters"][0]["amount"]) == sum(Decimal(r["amount"]) for r in node_rows)

    # A single instance is unaffected: its own group, no cluster, not in any cluster's subtotal.
    solo = by_key[str(single.pk)]
    assert (solo["name"], solo["cluster"], solo["cluster_name"], solo["rank"]) == ("solo", None, None, None)
    assert Decimal(solo["amount"]) == ledger_amount(3600, SINGLE_PRICE) == Decimal("2.000000")
    assert Decimal(body["total"]) == Decimal("13.500000") + Decimal("2.000000")


@pytest.mark.parametrize("group_by", ["instance_type", "day"])
def test_the_cluster_subtotal_is_the_same_whatever_the_grouping(owner, world, group_by):
    per_instance = usage(owner, "instance")

    body = usage(owner, group_by)

    assert body["clusters"] == per_instance["clusters"]
    assert body["total"] == per_instance["total"]  # nodes are in results and total once
    assert all(r["cluster"] is None and r["rank"] is None for r in body["results"])


def test_another_tenant_sees_no_cluster_and_its_own_nodes_stay_its_own(owner, make_actor, world):
    stranger = make_actor(Role.OWNER)
    theirs = make_cluster(stranger, "train-a", seconds=(120,))

    mine = usage(owner, "instance")
    their_usage = usage(stranger, "instance")

    assert [c["id"] for c in mine["clusters"]] == [str(world[0].pk)]
    assert their_usage["clusters"] == [
        {
            "id": str(theirs.pk),
            "name": "train-a",
            "node_count": 1,
            "quantity_seconds": 120,
            "quantity_hours": "0.033333",
            "amount": "0.666667",
        }
    ]
    assert {r["key"] for r in their_usage["results"]} == {str(theirs.nodes.get().pk)}


def test_usage_query_count_does_not_grow_with_clusters_or_nodes(owner, catalog):
    make_cluster(owner, "one")
    client = owner.token_client()
    start, end = periods.bounds(last_month())
    counts: dict[str, list[int]] = {"instance": [], "instance_type": []}

    def count() -> None:
        for group_by in counts:
            params = {"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by}
            with CaptureQueriesContext(connection) as queries:
                assert client.get(owner.url("/billing/usage"), params).status_code == 200
            counts[group_by].append(len(queries))

    client.get(owner.url("/billing/usage"))  # warm up: the token's last use
    count()
    for name in ("two", "three", "four"):
        make_cluster(owner, name, seconds=(60, 120, 180))
    make_single(owner, "solo-2")
    count()

    assert all(a == b for a, b in counts.values()), counts


# --- the invoice --------------------------------------------------------------------------------------


def test_invoice_has_a_line_per_node_under_the_cluster_adding_up_to_its_subtotal(owner, world):
    cluster, _ = world
    invoice = invoice_close(tenant=owner.tenant, month=last_month())

    body = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}")).json()

    single, *nodes = body["lines"]
    assert (single["meter"], single["cluster"], single["cluster_name"], single["rank"]) == (
        "instance_seconds:gpu-h100x1",
        None,
        None,
        None,
    )
    assert single["amount"] == "2.00"
    assert [(n["cluster"], n["cluster_name"], n["rank"], n["quantity_seconds"]) for n in nodes] == [
        (str(cluster.pk), "train-a", 0, 600),
        (str(cluster.pk), "train-a", 1, 1830),
    ]
    # Rounded to cents once per line, from the exact seconds: 600 s x 20/h = 3.33, 1830 s = 10.1666.. = 10.17.
    assert [n["amount"] for n in nodes] == ["3.33", "10.17"]
    type_name = InstanceType.objects.get(slug="gpu-h100x8").name
    assert nodes[0]["description"] == f"gpu-h100x8 ({type_name}) instance hours, cluster train-a node 0"
    assert body["clusters"] == [
        {
            "id": str(cluster.pk),
            "name": "train-a",
            "node_count": 2,
            "quantity_seconds": 2430,
            "quantity_hours": "0.675000",
            "amount": "13.50",
        }
    ]
    assert Decimal(body["clusters"][0]["amount"]) == sum(Decimal(n["amount"]) for n in nodes)
    assert Decimal(body["subtotal"]) == Decimal("2.00") + Decimal("13.50")


def test_invoice_of_single_instances_only_is_unchanged(owner, catalog):
    make_single(owner, "a")
    make_single(owner, "b", seconds=1800)
    invoice = invoice_close(tenant=owner.tenant, month=last_month())

    body = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}")).json()

    # Two instances of one type at one price: one line, their seconds added, as before clusters.
    [line] = body["lines"]
    assert (line["quantity_seconds"], line["amount"], line["cluster"]) == (5400, "3.00", None)
    assert body["clusters"] == []
    assert "Cluster" not in rendering.render_text(invoice)


def test_finalized_invoice_keeps_the_cluster_as_it_was(owner, world):
    cluster, _ = world
    invoice = invoice_close(tenant=owner.tenant, month=last_month())

    Cluster.objects.filter(pk=cluster.pk).update(name="renamed", state="terminated")
    body = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}")).json()

    assert body["clusters"][0]["name"] == "train-a"
    assert {line["cluster_name"] for line in body["lines"][1:]} == {"train-a"}
    # The database refuses to regroup a finalized invoice's lines, for any client.
    with pytest.raises(DatabaseError), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice, rank=0).update(cluster_name="renamed")
    with pytest.raises(DatabaseError), transaction.atomic():
        InvoiceLine.objects.filter(invoice=invoice, rank=0).update(cluster_id=None, rank=None)


def test_printable_invoice_groups_the_nodes_under_the_cluster(owner, world):
    invoice = invoice_close(tenant=owner.tenant, month=last_month())

    text = rendering.render_text(invoice)
    html = rendering.render_html(invoice)

    lines = text.splitlines()
    head = lines.index("Cluster train-a (2 nodes)")
    assert lines[head + 1].split() == [
        "node",
        "0:",
        "gpu-h100x8",
        "0.166667",
        "600",
        "20.0000",
        "3.33",
        "USD",
    ]
    assert lines[head + 2].split() == [
        "node",
        "1:",
        "gpu-h100x8",
        "0.508333",
        "1830",
        "20.0000",
        "10.17",
        "USD",
    ]
    assert lines[head + 3].startswith("  Cluster train-a subtotal") and lines[head + 3].endswith("13.50 USD")
    assert "Cluster train-a" in html and "Cluster train-a subtotal" in html and "13.50" in html

    client = Client()
    client.force_login(owner.user)
    page = client.get(f"/billing/invoices/{invoice.pk}/")
    assert page.status_code == 200 and "Cluster train-a subtotal" in page.content.decode()


def test_another_tenant_cannot_see_the_invoice(owner, make_actor, world):
    invoice = invoice_close(tenant=owner.tenant, month=last_month())
    stranger = make_actor(Role.OWNER)

    assert stranger.token_client().get(stranger.url(f"/billing/invoices/{invoice.pk}")).status_code == 404
    assert owner.token_client().get(stranger.url(f"/billing/invoices/{invoice.pk}")).status_code in (403, 404)


def test_invoice_detail_query_count_does_not_grow_with_clusters(owner, make_actor, catalog):
    small_owner = make_actor(Role.OWNER)
    make_cluster(small_owner, "one", seconds=(60,))
    small = invoice_close(tenant=small_owner.tenant, month=last_month())
    for name in ("one", "two", "three"):
        make_cluster(owner, name, seconds=(60, 120, 180))
    make_single(owner)
    big = invoice_close(tenant=owner.tenant, month=last_month())

    def count(actor: Any, invoice: Any) -> int:
        client = actor.token_client()
        client.get(actor.url("/billing/invoices"))  # warm up: the token's last use
        with CaptureQueriesContext(connection) as queries:
            body = client.get(actor.url(f"/billing/invoices/{invoice.pk}")).json()
        assert len(body["lines"]) == InvoiceLine.objects.filter(invoice=invoice).count()
        return len(queries)

    assert count(owner, big) == count(small_owner, small)
    assert len(InvoiceLine.objects.filter(invoice=big)) == 10


def test_closing_costs_the_same_queries_for_one_cluster_or_many(make_actor, catalog):
    one, many = make_actor(Role.OWNER), make_actor(Role.OWNER)
    make_cluster(one, "one", seconds=(60,))
    for name in ("a", "b", "c"):
        make_cluster(many, name, seconds=(60, 120, 180))
    make_single(many)

    def count(actor: Any) -> int:
        with CaptureQueriesContext(connection) as queries:
            invoice_close(tenant=actor.tenant, month=last_month())
        return len(queries)

    assert count(one) == count(many)
