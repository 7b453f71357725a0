"""The billing page's usage export: a GET form (from, to, format) whose answer is the API's streamed file,
field errors shown on the page, and the same access rules as the page."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from apps.billing import exports
from apps.billing.selectors import month_start
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import usage
from tests.console.account.helpers import MakeActor, browser, html, page_url

pytestmark = pytest.mark.django_db

OCTOBER = {"from": "2026-10-01", "to": "2026-11-01"}


def streamed(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_the_billing_page_offers_this_months_export(make_actor: MakeActor) -> None:
    billing = make_actor(Role.BILLING)
    month = month_start(datetime.now(UTC))
    following = (month + timedelta(days=32)).replace(day=1)

    page = html(browser(billing).get(page_url("billing", billing)))

    assert f'action="{page_url("billing_usage_export", billing)}"' in page
    assert f'name="from" type="date" value="{month:%Y-%m-%d}"' in page
    assert f'name="to" type="date" value="{following:%Y-%m-%d}"' in page
    assert '<option value="json">JSON</option>' in page


def test_the_form_downloads_the_tenants_lines_as_csv_or_json(make_actor: MakeActor) -> None:
    billing = make_actor(Role.BILLING)
    stranger = make_actor(Role.OWNER)
    usage(billing.tenant, "0.041500", end=datetime(2026, 10, 2, 0, 1, tzinfo=UTC))
    usage(billing.tenant, "0.500000", end=datetime(2026, 11, 1, 0, 1, tzinfo=UTC))  # starts on the 1st
    usage(stranger.tenant, "9.000000", end=datetime(2026, 10, 5, tzinfo=UTC))
    client = browser(billing)

    as_csv = client.get(page_url("billing_usage_export", billing), {**OCTOBER, "format": "csv"})
    as_json = client.get(page_url("billing_usage_export", billing), {**OCTOBER, "format": "json"})

    assert as_csv.status_code == 200 and as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"] == (
        f'attachment; filename="usage-{billing.tenant.slug}-20261001T000000Z-20261101T000000Z.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(streamed(as_csv))))
    assert [(r["period_start"], r["amount"]) for r in rows] == [("2026-10-02T00:00:00Z", "0.041500")]
    assert list(rows[0]) == list(exports.COLUMNS)
    assert [line["amount"] for line in json.loads(streamed(as_json))] == ["0.041500"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"from": "2026-10-31", "to": "2026-10-01"}, "to", "Must be later than from."),
        ({"from": "", "to": "2026-10-01"}, "from", "Datetime has wrong format."),
        ({**OCTOBER, "format": "xlsx"}, "format", '"xlsx" is not a valid choice.'),
    ],
)
def test_bad_input_is_shown_on_the_form(make_actor: MakeActor, query, field, message) -> None:
    owner = make_actor(Role.OWNER)

    response = browser(owner).get(page_url("billing_usage_export", owner), query)

    assert response.status_code == 400
    page = html(response)
    assert f'aria-invalid="true" aria-describedby="export-{field}-error"' in page
    assert f'id="export-{field}-error">{message}' in page.replace("&quot;", '"')
    assert f'value="{query.get("from", "")}"' in page  # what was typed is kept


def test_access_is_the_billing_pages(make_actor: MakeActor) -> None:
    owner = make_actor(Role.OWNER)
    member = make_actor(Role.MEMBER, tenant=owner.tenant)
    stranger = make_actor(Role.OWNER)
    url = page_url("billing_usage_export", owner)

    assert browser(member).get(url, OCTOBER).status_code == 403
    assert browser(stranger).get(url, OCTOBER).status_code == 404
    anonymous = Client().get(url, OCTOBER)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
