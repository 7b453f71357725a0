"""The invoice as a printable HTML page (console and download), as PDF (that page laid out for print) and
as plain text (docs/billing.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.template.loader import render_to_string

from apps.billing.invoices import pdf
from apps.billing.invoices.models import Invoice, InvoiceLine
from apps.billing.invoices.selectors import invoice_clusters

ISSUER = "gpucloud"


def line_groups(invoice: Invoice) -> tuple[list[InvoiceLine], list[dict[str, Any]]]:
    """The lines that belong to no cluster, and per cluster its subtotal (`cluster`, from
    selectors.invoice_clusters) with its nodes' lines (`lines`), in the invoice's order."""
    lines = list(invoice.lines.all())
    by_cluster: dict[Any, list[InvoiceLine]] = {}
    for line in lines:
        if line.cluster_id is not None:
            by_cluster.setdefault(line.cluster_id, []).append(line)
    groups: list[dict[str, Any]] = [
        {"cluster": c, "lines": by_cluster[c["id"]]} for c in invoice_clusters(invoice)
    ]
    groups.sort(key=lambda g: g["lines"][0].position)
    return [line for line in lines if line.cluster_id is None], groups


def render_html(invoice: Invoice) -> str:
    plain, clusters = line_groups(invoice)
    return render_to_string(
        "billing/invoice.html",
        {"invoice": invoice, "lines": plain, "clusters": clusters, "issuer": ISSUER},
    )


def render_pdf(invoice: Invoice) -> bytes:
    """The printable page as PDF: the same template, so the two never disagree."""
    return pdf.html_to_pdf(render_html(invoice))


def download_name(invoice: Invoice, extension: str) -> str:
    """`invoice-GPC-2026-10-000042.pdf`; a draft has no number yet, so its id names it."""
    return f"invoice-{invoice.number or f'draft-{invoice.pk}'}.{extension}"


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {currency}"


def render_text(invoice: Invoice) -> str:
    """A fixed-width rendering, used for the example bill in the docs."""
    currency = invoice.currency
    header = f"{'Item':<44} {'Hours':>14} {'Seconds':>9} {'Price/h':>10} {'Amount':>14}"
    out = [
        f"Invoice {invoice.number or '(draft)'}  ·  {invoice.tenant.name} ({invoice.tenant.slug})",
        f"Period {invoice.period_start:%Y-%m-%d %H:%M} to {invoice.period_end:%Y-%m-%d %H:%M} UTC "
        f"(end exclusive)  ·  status {invoice.status}",
        "",
        header,
        "-" * len(header),
    ]
    width = len(header)

    def row(line: InvoiceLine, item: str) -> str:
        return (
            f"{item:<44} {line.quantity_hours:>14} {line.quantity_seconds:>9} "
            f"{line.unit_price_per_hour:>10} {_money(line.amount, currency):>14}"
        )

    plain, clusters = line_groups(invoice)
    out.extend(row(line, line.description) for line in plain)
    for group in clusters:
        cluster = group["cluster"]
        nodes = f"{cluster['node_count']} node{'s' if cluster['node_count'] != 1 else ''}"
        out.append(f"Cluster {cluster['name']} ({nodes})")
        # Under its cluster's heading a node's line is short: its rank and instance type (the description,
        # which names the cluster too, is in the API and the printable page).
        out.extend(
            row(line, f"  node {line.rank}: {line.meter.removeprefix('instance_seconds:')}")
            for line in group["lines"]
        )
        label, text = f"  Cluster {cluster['name']} subtotal", _money(cluster["amount"], currency)
        out.append(f"{label:<{width - len(text)}}{text}")
    out.append("-" * len(header))
    for label, text in (
        ("Subtotal", _money(invoice.subtotal, currency)),
        (
            "Credits applied",
            ("-" if invoice.credits_applied else "") + _money(invoice.credits_applied, currency),
        ),
        ("Total due", _money(invoice.total, currency)),
    ):
        out.append(f"{label:<{width - len(text)}}{text}")
    return "\n".join(out)
