"""The invoice as a printable HTML page (console and download) and as plain text (docs/billing.md)."""

from __future__ import annotations

from decimal import Decimal

from django.template.loader import render_to_string

from apps.billing.invoices.models import Invoice

ISSUER = "gpucloud"


def render_html(invoice: Invoice) -> str:
    return render_to_string(
        "billing/invoice.html", {"invoice": invoice, "lines": list(invoice.lines.all()), "issuer": ISSUER}
    )


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
    for line in invoice.lines.all():
        out.append(
            f"{line.description:<44} {line.quantity_hours:>14} {line.quantity_seconds:>9} "
            f"{line.unit_price_per_hour:>10} {_money(line.amount, currency):>14}"
        )
    out.append("-" * len(header))
    width = len(header)
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
