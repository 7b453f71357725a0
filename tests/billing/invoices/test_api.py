"""The invoice API and the printable page: lists with filters, details with lines, HTML, 404 elsewhere."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.billing.invoices.models import Invoice
from apps.tenants.roles import Role
from tests.billing.invoices.helpers import OCTOBER, at, make_invoice, write_usage
from tests.conftest import login_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice(owner):
    write_usage(owner.tenant, instance_type="gpu-a100x1", start=at(4), seconds=7200, price="1.2900")
    return make_invoice(owner.tenant)


def test_list_is_paginated_newest_month_first(owner):
    october = make_invoice(owner.tenant)
    september = make_invoice(owner.tenant)

    body = owner.token_client().get(owner.url("/billing/invoices"), {"limit": 1}).json()

    assert body["count"] == 2
    assert [row["id"] for row in body["results"]] == [str(october.pk)]
    assert body["next"]
    row = body["results"][0]
    assert row == {
        "id": str(october.pk),
        "number": october.number,
        "status": "finalized",
        "month": "2026-10",
        "period_start": "2026-10-01T00:00:00Z",
        "period_end": "2026-11-01T00:00:00Z",
        "currency": "USD",
        "subtotal": "3.74",
        "credits_applied": "0.00",
        "total": "3.74",
        "payment_status": "prepaid",  # a prepaid tenant's total is not charged (docs/billing.md, Stripe)
        "created_at": row["created_at"],
        "finalized_at": row["finalized_at"],
    }
    assert september.month == date(2026, 9, 1)


def test_list_filters_by_month_and_status(owner):
    make_invoice(owner.tenant)
    september = make_invoice(owner.tenant)
    client = owner.token_client()

    by_month = client.get(owner.url("/billing/invoices"), {"month": "2026-09"}).json()
    finalized = client.get(owner.url("/billing/invoices"), {"status": "finalized"}).json()
    drafts = client.get(owner.url("/billing/invoices"), {"status": "draft"}).json()

    assert [row["id"] for row in by_month["results"]] == [str(september.pk)]
    assert finalized["count"] == 2
    assert drafts["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"), [({"month": "2026-13"}, "month"), ({"status": "paid"}, "status")]
)
def test_bad_filters_answer_400_naming_the_field(owner, params, field):
    response = owner.token_client().get(owner.url("/billing/invoices"), params)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]


def test_detail_has_the_lines(owner, invoice):
    body = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}")).json()

    assert body["number"] == invoice.number
    assert body["subtotal"] == "6.32"  # 2 h A100 at 1.29 = 2.58, 1.5 h H100 at 2.49 = 3.735 -> 3.74
    assert body["lines"] == [
        {
            "position": 1,
            "meter": "instance_seconds:gpu-a100x1",
            "description": "gpu-a100x1 instance hours",
            "cluster": None,
            "cluster_name": None,
            "rank": None,
            "quantity_seconds": 7200,
            "quantity_hours": "2.000000",
            "unit_price_per_hour": "1.2900",
            "amount": "2.58",
        },
        {
            "position": 2,
            "meter": "instance_seconds:gpu-h100x1",
            "description": "gpu-h100x1 instance hours",
            "cluster": None,
            "cluster_name": None,
            "rank": None,
            "quantity_seconds": 5400,
            "quantity_hours": "1.500000",
            "unit_price_per_hour": "2.4900",
            "amount": "3.74",
        },
    ]
    assert body["clusters"] == []  # no node of a cluster: nothing grouped


def test_html_download(owner, invoice):
    response = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}/html"))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{invoice.number}.html"'
    html = response.content.decode()
    assert f"Invoice {invoice.number}" in html
    assert "@media print" in html
    assert "3.74" in html and "1.500000" in html and "6.32 USD" in html


def test_another_tenants_invoice_is_a_404_on_every_endpoint(owner, make_actor):
    stranger = make_actor(Role.OWNER)
    theirs = make_invoice(stranger.tenant)
    client = owner.token_client()

    for suffix in (f"/billing/invoices/{theirs.pk}", f"/billing/invoices/{theirs.pk}/html"):
        response = client.get(owner.url(suffix))
        assert response.status_code == 404, suffix
        assert response.json()["error"]["code"] == "not_found"
    assert client.get(owner.url("/billing/invoices")).json()["count"] == 0
    assert stranger.token_client().get(owner.url("/billing/invoices")).status_code == 404


# --- the printable page -------------------------------------------------------------------------------


def _page(actor_or_none, invoice):
    client = Client()
    if actor_or_none is not None:
        client.force_login(actor_or_none.user)
    return client.get(f"/billing/invoices/{invoice.pk}/")


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.BILLING, 200), (Role.MEMBER, 404), (Role.VIEWER, 404)],
)
def test_page_for_members_who_read_billing(make_actor, invoice, role, status):
    actor = make_actor(role, tenant=invoice.tenant)

    response = _page(actor, invoice)

    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert invoice.number in html and invoice.tenant.name in html
        assert "Subtotal" in html and "Credits applied" in html and "Total due" in html


def test_page_of_another_tenant_is_a_404_and_anonymous_must_log_in(make_actor, invoice):
    stranger = make_actor(Role.OWNER)

    assert _page(stranger, invoice).status_code == 404
    anonymous = _page(None, invoice)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


# --- query counts -------------------------------------------------------------------------------------


def _count(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response.json()


def test_list_query_count_does_not_grow(owner):
    client = owner.token_client()
    url = owner.url("/billing/invoices")
    for _ in range(2):
        make_invoice(owner.tenant)
    client.get(url)  # warm up: the token's last use

    few, body = _count(client, url)
    assert body["count"] == 2
    for _ in range(23):
        make_invoice(owner.tenant)
    many, body = _count(client, url)

    assert body["count"] == 25 and len(body["results"]) == 25
    assert many == few


def test_detail_query_count_does_not_grow_with_lines(owner):
    client = owner.token_client()
    small = make_invoice(owner.tenant)
    for index in range(12):
        write_usage(
            owner.tenant,
            instance_type=f"type-{index}",
            start=at(3, month=date(2026, 8, 1)),
            seconds=60,
            price=f"{index + 1}.00",
        )
    big = make_invoice(owner.tenant, month=date(2026, 8, 1))
    client.get(owner.url(f"/billing/invoices/{small.pk}"))

    few, small_body = _count(client, owner.url(f"/billing/invoices/{small.pk}"))
    many, big_body = _count(client, owner.url(f"/billing/invoices/{big.pk}"))

    assert (len(small_body["lines"]), len(big_body["lines"])) == (1, 13)
    assert many == few
    assert Invoice.objects.filter(tenant=owner.tenant).count() == 2
    assert small.month == OCTOBER


def test_staff_admin_shows_invoices_read_only(invoice):
    from tests.factories import UserFactory

    staff = UserFactory(is_staff=True, is_superuser=True)
    client = login_staff(Client(), staff)

    listing = client.get("/admin/billing_invoices/invoice/")
    page = client.get(f"/admin/billing_invoices/invoice/{invoice.pk}/change/")
    posted = client.post(f"/admin/billing_invoices/invoice/{invoice.pk}/change/", {"total": "0.00"})

    assert listing.status_code == 200 and invoice.number in listing.content.decode()
    assert page.status_code == 200 and "3.74" in page.content.decode()
    assert client.get("/admin/billing_invoices/invoice/add/").status_code == 403
    assert posted.status_code == 403
    assert Invoice.objects.get(pk=invoice.pk).total == invoice.total
