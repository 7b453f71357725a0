"""Invoices as PDF: GET .../billing/invoices/{id}/pdf and the console's /billing/invoices/{id}/pdf/. The PDF
is rendered back to an image with PDFium and read: its pages, its text (number, tenant, lines, total) and
its ink; another tenant's invoice is a 404; nothing the page names is fetched."""

from __future__ import annotations

import sys
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pypdfium2 as pdfium
import pytest
from django.test import Client

from apps.billing.invoices import pdf
from apps.tenants.roles import Role
from tests.billing.invoices.helpers import at, make_invoice, write_usage

pytestmark = pytest.mark.django_db

A4_POINTS = (595, 842)  # 210 x 297 mm at 72 points per inch, rounded


@pytest.fixture
def invoice(owner):
    owner.tenant.name = "Acme AI"
    owner.tenant.save(update_fields=["name"])
    write_usage(owner.tenant, instance_type="gpu-a100x1", start=at(4), seconds=7200, price="1.2900")
    return make_invoice(owner.tenant)


def read_pdf(content: bytes, tmp_path=None) -> tuple[int, str, tuple[int, int], float]:
    """(pages, the text of every page, the first page's size in points, the share of its pixels that are
    not white), from PDFium's rendering of the first page; the PNG is kept in `tmp_path` to look at."""
    assert content.startswith(b"%PDF-")
    document = pdfium.PdfDocument(content)
    try:
        text = "\n".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
        page = document[0]
        size = (round(page.get_width()), round(page.get_height()))
        image = page.render(scale=1).to_pil().convert("L")
        if tmp_path is not None:
            image.save(tmp_path / "invoice.png")
        inked = sum(count for level, count in enumerate(image.histogram()) if level < 200)
        return len(document), text, size, inked / (image.width * image.height)
    finally:
        document.close()


def test_the_api_serves_the_invoice_as_a_pdf(owner, invoice, tmp_path):
    response = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}/pdf"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{invoice.number}.pdf"'
    pages, text, size, ink = read_pdf(response.content, tmp_path)
    assert pages == 1
    assert size == A4_POINTS
    assert 0.005 < ink < 0.5, ink  # text and rules on a white page: neither blank nor a black box
    flat = " ".join(text.split())
    assert f"Invoice {invoice.number}" in flat
    assert "Acme AI" in flat and invoice.tenant.slug in flat
    assert "gpu-a100x1 instance hours" in flat and "gpu-h100x1 instance hours" in flat
    assert "2.58" in flat and "3.74" in flat  # each line's amount
    assert invoice.total == Decimal("6.32")
    assert "Total due" in flat and "6.32 USD" in flat
    assert "Print or save as PDF" not in flat  # the page's print button is screen-only


def test_a_long_invoice_runs_over_pages_with_every_line(owner):
    for index in range(60):
        write_usage(
            owner.tenant, instance_type=f"type-{index:02d}", start=at(3), seconds=60, price=f"{index + 1}.00"
        )
    invoice = make_invoice(owner.tenant)

    response = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}/pdf"))

    pages, text, _size, _ink = read_pdf(response.content)
    assert pages >= 2
    assert all(f"type-{index:02d} instance hours" in text for index in range(60))
    assert f"{invoice.total} USD" in text


def test_another_tenants_invoice_is_a_404(owner, make_actor):
    stranger = make_actor(Role.OWNER)
    theirs = make_invoice(stranger.tenant)

    response = owner.token_client().get(owner.url(f"/billing/invoices/{theirs.pk}/pdf"))
    in_their_tenant = owner.token_client().get(stranger.url(f"/billing/invoices/{theirs.pk}/pdf"))

    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert in_their_tenant.status_code == 404


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.ADMIN, 200), (Role.BILLING, 200), (Role.MEMBER, 403), (Role.VIEWER, 403)],
)
def test_billing_read_is_needed(make_actor, invoice, role, status):
    actor = make_actor(role, tenant=invoice.tenant)

    response = actor.token_client().get(actor.url(f"/billing/invoices/{invoice.pk}/pdf"))

    assert response.status_code == status


def test_a_client_that_asks_for_a_pdf_gets_one(owner, invoice):
    response = owner.token_client().get(
        owner.url(f"/billing/invoices/{invoice.pk}/pdf"), HTTP_ACCEPT="application/pdf"
    )

    assert response.status_code == 200 and response.content.startswith(b"%PDF-")


def test_without_the_renderer_it_is_a_503_naming_the_html_download(owner, invoice, monkeypatch):
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # as if it could not be imported

    response = owner.token_client().get(owner.url(f"/billing/invoices/{invoice.pk}/pdf"))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "pdf_unavailable"
    assert "HTML" in response.json()["error"]["message"]


# --- the console ------------------------------------------------------------------------------------------


def _console(actor_or_none, invoice):
    client = Client()
    if actor_or_none is not None:
        client.force_login(actor_or_none.user)
    return client.get(f"/billing/invoices/{invoice.pk}/pdf/")


def test_the_console_link_downloads_the_pdf(owner, invoice):
    page = Client()
    page.force_login(owner.user)
    billing = page.get(f"/t/{owner.tenant.slug}/billing/").content.decode()
    assert f'href="/billing/invoices/{invoice.pk}/pdf/"' in billing

    response = _console(owner, invoice)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{invoice.number}.pdf"'
    _pages, text, _size, _ink = read_pdf(response.content)
    assert invoice.number in text


def test_the_console_pdf_is_a_404_elsewhere_and_needs_a_session(make_actor, invoice):
    assert _console(make_actor(Role.OWNER), invoice).status_code == 404
    assert _console(make_actor(Role.MEMBER, tenant=invoice.tenant), invoice).status_code == 404
    anonymous = _console(None, invoice)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


# --- nothing is fetched ------------------------------------------------------------------------------------


def test_urls_in_the_page_are_never_fetched():
    asked: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b"body { background: black }")

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        document = pdf.html_to_pdf(
            f'<link rel="stylesheet" href="{base}/style.css"><img src="{base}/logo.png">'
            '<img src="file:///etc/hostname"><p>Invoice GPC-1</p>'
        )
    finally:
        server.shutdown()
        server.server_close()

    assert asked == []
    _pages, text, _size, ink = read_pdf(document)
    assert "Invoice GPC-1" in text and ink < 0.5  # the black stylesheet was not applied
