"""The dashboard's charts: spend per day for the last 30 days, GPUs in use against quota per GPU type, and the
balance runway. Each test writes the ledger rows, instances and limits, then reads the figures back from the
rendered SVG (bar heights, widths, labels) and from the text alternatives (descriptions and tables)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog.models import GpuType
from apps.console import charts
from apps.quotas.models import GpuQuota
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import usage
from tests.console.helpers import client_for, make_instance, page
from tests.console.html_tree import Node, parse
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

MakeActor = Callable[..., Any]


def dashboard(actor: Any) -> tuple[Any, Node]:
    response = client_for(actor.user).get(page("dashboard", actor.tenant))
    assert response.status_code == 200
    return response, parse(response.content.decode())


def midnight(days_ago: int) -> datetime:
    today = timezone.now().astimezone(UTC).date()
    return datetime.combine(today - timedelta(days=days_ago), datetime.min.time(), tzinfo=UTC)


def the_last_30_days() -> list[str]:
    return [midnight(n).date().isoformat() for n in range(29, -1, -1)]


def on_day(tenant: Any, days_ago: int, amount: str) -> None:
    """A ledger row of `amount` starting on that UTC day (today's at midnight, so it is in the past)."""
    if days_ago == 0:
        usage(tenant, amount, end=midnight(0) + timedelta(seconds=1), seconds=1)
    else:
        usage(tenant, amount, end=midnight(days_ago) + timedelta(hours=12))


# --- spend per day ---------------------------------------------------------------------------------------


def test_spend_per_day_draws_one_bar_per_day_of_the_last_30_from_the_ledger(
    make_actor: MakeActor, catalog: Any
) -> None:
    owner = make_actor(Role.OWNER)
    tenant = owner.tenant
    on_day(tenant, 0, "2.500000")
    on_day(tenant, 0, "0.250000")  # same day: summed
    on_day(tenant, 3, "1.000000")
    on_day(tenant, 10, "4.000000")
    on_day(tenant, 29, "0.004999")  # rounds to 0.00, but is still a (1 unit) bar
    on_day(tenant, 30, "9.000000")  # 31 days ago: not on the chart
    on_day(TenantFactory(), 3, "50.000000")  # another tenant's spend

    _, root = dashboard(owner)

    figure = root.by_id("spend-by-day")
    bars = figure.find_all("rect", cls="chart-bar")
    days = the_last_30_days()
    assert [bar.attrs["data-label"] for bar in bars] == days
    values = {bar.attrs["data-label"]: bar.attrs["data-value"] for bar in bars}
    expected = {day: "0.00" for day in days}
    expected.update({days[-1]: "2.75", days[-4]: "1.00", days[-11]: "4.00", days[0]: "0.00"})
    assert values == expected
    # Heights are proportional to the highest day (4.00 is the full 160 units); bars stand on the axis.
    heights = {bar.attrs["data-label"]: int(bar.attrs["height"]) for bar in bars}
    assert heights[days[-11]] == 160
    assert heights[days[-1]] == 110  # 2.75 / 4.00 of 160
    assert heights[days[-4]] == 40
    assert heights[days[0]] == 0  # 0.004999 rounds to 0.00 for display, and so to no bar
    assert all(int(bar.attrs["y"]) + int(bar.attrs["height"]) == 160 for bar in bars)
    assert sorted(h for d, h in heights.items() if d not in (days[-11], days[-1], days[-4])) == [0] * 27
    # The day of the month under each bar, and the bar's own tooltip.
    assert [t.text for t in figure.find_all("text", cls="chart-label")][-1] == days[-1][-2:]
    assert bars[-1].find("title").text == f"{days[-1]}: 2.75 USD"

    # Text alternatives: the SVG is an image named by its title and described by its desc, and the table
    # beside it has every day's amount and the total.
    svg = figure.find("svg")
    assert svg.attrs["role"] == "img"
    assert root.by_id(svg.attrs["aria-labelledby"]).text == "Spend by day (UTC): total 7.75 USD"
    desc = root.by_id(svg.attrs["aria-describedby"]).text
    assert f"the highest is {days[-11]} with 4.00 USD" in desc
    table = figure.parent.find("details", cls="chart-data")  # type: ignore[union-attr]
    rows = {day: amount for day, amount in table.rows()}
    assert rows == expected
    assert table.find("tfoot").text == "Total 7.75"


def test_the_spend_chart_is_one_grouped_ledger_read_however_many_days_have_usage(
    make_actor: MakeActor, catalog: Any
) -> None:
    quiet, busy = make_actor(Role.OWNER), make_actor(Role.OWNER)
    on_day(quiet.tenant, 2, "1.000000")
    for days_ago in range(30):
        on_day(busy.tenant, days_ago, "1.000000")
    client_quiet, client_busy = client_for(quiet.user), client_for(busy.user)

    counts = []
    for client, actor in ((client_quiet, quiet), (client_busy, busy)):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(page("dashboard", actor.tenant)).status_code == 200
        counts.append(len(queries))
        ledger_reads = [
            q["sql"] for q in queries if "billing_usagerecord" in q["sql"] and "GROUP BY" in q["sql"]
        ]
        assert len([sql for sql in ledger_reads if "DATE" in sql.upper() or "::date" in sql]) == 1, (
            ledger_reads
        )

    assert counts[0] == counts[1]


def test_without_billing_read_there_is_no_spend_or_runway_chart(make_actor: MakeActor, catalog: Any) -> None:
    member = make_actor(Role.MEMBER)
    on_day(member.tenant, 1, "3.000000")

    response, root = dashboard(member)

    assert "spend_chart" not in response.context and "runway_chart" not in response.context
    html = response.content.decode()
    assert 'id="spend-by-day"' not in html and 'id="runway-chart"' not in html
    assert root.by_id("gpu-h")  # the GPU section is for every member


# --- GPUs in use against quota ---------------------------------------------------------------------------


def test_gpu_bars_show_use_against_each_types_limit(make_actor: MakeActor, catalog: Any) -> None:
    owner = make_actor(Role.OWNER)
    tenant = owner.tenant
    make_instance(tenant, created_by=owner.user, instance_type="gpu-h100x2")  # 2 of the tenant's 8
    make_instance(tenant, created_by=owner.user, instance_type="gpu-a100x1")  # 1 of its own limit 1
    make_instance(tenant, created_by=owner.user, instance_type="gpu-h100x1", state="stopped")  # holds none
    GpuQuota.objects.create(tenant=tenant, gpu_type=GpuType.objects.get(slug="l40s-48gb"), max_gpus=4)
    GpuQuota.objects.create(tenant=tenant, gpu_type=GpuType.objects.get(slug="a100-80gb"), max_gpus=1)

    _, root = dashboard(owner)

    figure = root.by_id("gpu-quota")
    bars = {bar.attrs["data-label"]: bar for bar in figure.find_all("rect", cls="chart-bar")}
    shown = {label: (int(b.attrs["data-used"]), int(b.attrs["data-limit"])) for label, b in bars.items()}
    assert shown == {"l40s-48gb": (0, 4), "a100-80gb": (1, 1), "h100-80gb": (2, 8)}
    # The filled part is the share of the limit, of a 320-unit track; a type at its limit is marked.
    widths = {label: int(b.attrs["width"]) for label, b in bars.items()}
    assert widths == {"l40s-48gb": 0, "a100-80gb": 320, "h100-80gb": 80}
    assert "chart-bar-over" in bars["a100-80gb"].classes
    assert "chart-bar-over" not in bars["h100-80gb"].classes
    assert {int(t.attrs["width"]) for t in figure.find_all("rect", cls="chart-track")} == {320}
    labels = [t.text for t in figure.find_all("text", cls="chart-label")]
    assert "2 / 8" in labels and "h100-80gb (tenant total)" in labels

    svg = figure.find("svg")
    desc = root.by_id(svg.attrs["aria-describedby"]).text
    assert desc == "l40s-48gb: 0 of 4; a100-80gb: 1 of 1; h100-80gb: 2 of 8 (tenant total)."
    rows = root.by_id("gpu-quota-table").rows()
    assert rows == [
        ["l40s-48gb", "0", "4", "0%"],
        ["a100-80gb", "1", "1", "100%"],
        ["h100-80gb", "2", "8 (tenant total)", "25%"],
    ]


def test_no_gpus_no_bars_and_the_table_says_so(make_actor: MakeActor, catalog: Any) -> None:
    owner = make_actor(Role.OWNER)
    response, root = dashboard(owner)
    assert 'id="gpu-quota"' not in response.content.decode()
    assert root.by_id("gpu-quota-table").rows() == [["No GPUs in use."]]


# --- the balance runway ----------------------------------------------------------------------------------


def test_runway_projects_the_balance_at_the_burn_rate_until_it_reaches_zero(
    make_actor: MakeActor, catalog: Any
) -> None:
    owner = make_actor(Role.OWNER, tenant=TenantFactory(credit="50.00"))
    tenant = owner.tenant
    on_day(tenant, 1, "2.000000")  # 48.00 left
    make_instance(  # 4.98/h from now on: about 9 h 38 min of runway
        tenant, created_by=owner.user, instance_type="gpu-h100x2", running_since=timezone.now()
    )

    response, root = dashboard(owner)

    wallet = response.context["wallet"]
    assert wallet.burn_rate_per_hour == Decimal("4.98")
    assert Decimal("47.99") <= wallet.balance <= Decimal("48.00")
    chart = response.context["runway_chart"]
    # The same runway as the figure beside it, and a 12 h horizon ticked every 2 h.
    assert chart["empty_at"] == wallet.as_of + timedelta(seconds=wallet.runway_seconds)
    figure = root.by_id("runway-chart")
    table = figure.parent.find("details", cls="chart-data")  # type: ignore[union-attr]
    rows = table.rows()
    assert [r[0] for r in rows] == ["now", "+2 h", "+4 h", "+6 h", "+8 h", "+10 h", "+12 h"]
    for index, (_label, when, balance) in enumerate(rows):
        expected = max(Decimal(0), wallet.balance - Decimal("4.98") * 2 * index)
        assert balance == f"${expected.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"
        assert when == (wallet.as_of + timedelta(hours=2 * index)).strftime("%Y-%m-%d %H:%M")
    assert [r[2] == "$0.00" for r in rows] == [False] * 5 + [True] * 2  # empty between +8 h and +10 h
    svg = figure.find("svg")
    desc = root.by_id(svg.attrs["aria-describedby"]).text
    assert "falling $4.98 per hour" in desc
    assert f"it reaches $0.00 at {chart['empty_at']:%Y-%m-%d %H:%M} UTC" in desc
    # The line falls from the top-left to the axis where the balance runs out, then runs along it.
    start, bend, end = figure.find("polyline", cls="chart-line").attrs["points"].split()
    assert start == "0,0" and end == "480,120"
    assert bend == f"{round(480 * wallet.runway_seconds / (12 * 3600))},120"


def test_runway_without_running_costs_is_flat(make_actor: MakeActor, catalog: Any) -> None:
    owner = make_actor(Role.OWNER)  # 1000.00 of credit, nothing running
    response, root = dashboard(owner)
    figure = root.by_id("runway-chart")
    desc = root.by_id(figure.find("svg").attrs["aria-describedby"]).text
    assert desc == "$1,000.00 now; nothing is running, so it does not fall."
    rows = figure.parent.find("details", cls="chart-data").rows()  # type: ignore[union-attr]
    assert rows[0][0] == "now" and rows[-1][0] == "+30 d"
    assert {r[2] for r in rows} == {"$1,000.00"}
    assert figure.find("polyline", cls="chart-line").attrs["points"] == "0,0 480,0"
    assert response.context["runway_chart"]["empty_at"] is None


def test_a_used_up_balance_says_so(make_actor: MakeActor, catalog: Any) -> None:
    owner = make_actor(Role.OWNER, tenant=TenantFactory(credit="1.00"))
    on_day(owner.tenant, 1, "3.000000")
    _, root = dashboard(owner)
    figure = root.by_id("runway-chart")
    desc = root.by_id(figure.find("svg").attrs["aria-describedby"]).text
    assert desc == "The balance is used up (-$2.00)."


def test_runway_chart_geometry() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    chart = charts.runway_chart(balance=Decimal("10"), burn_per_hour=Decimal("1"), now=now)
    assert [(p.label, p.balance, p.x, p.y) for p in chart["points"]] == [
        ("now", Decimal("10.00"), 0, 0),
        ("+2 h", Decimal("8.00"), 80, 24),
        ("+4 h", Decimal("6.00"), 160, 48),
        ("+6 h", Decimal("4.00"), 240, 72),
        ("+8 h", Decimal("2.00"), 320, 96),
        ("+10 h", Decimal("0.00"), 400, 120),
        ("+12 h", Decimal("0.00"), 480, 120),
    ]
    assert chart["polyline"] == "0,0 400,120 480,120"
    assert chart["empty_at"] == now + timedelta(hours=10)
    # Longer runways pick longer horizons: 40 days is beyond the last (30 d), so the line ends above zero.
    long = charts.runway_chart(balance=Decimal("960"), burn_per_hour=Decimal("1"), now=now)
    assert long["horizon_label"] == "+30 d" and long["polyline"] == "0,0 480,90"  # 240.00 left
