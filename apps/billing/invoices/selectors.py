from typing import Any

from django.db.models import Prefetch, QuerySet

from apps.billing.cluster_usage import cluster_subtotals
from apps.billing.invoices.models import Invoice, InvoiceLine
from apps.tenants.models import Membership
from apps.tenants.roles import Perm, role_allows


def invoices_of(*, tenant: Any) -> QuerySet[Invoice]:
    return Invoice.objects.filter(tenant=tenant).select_related("tenant")


def invoices_with_lines_of(*, tenant: Any) -> QuerySet[Invoice]:
    return invoices_of(tenant=tenant).prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.order_by("position"))
    )


def invoice_for_reader(*, user: Any, invoice_id: Any) -> Invoice | None:
    """The invoice if `user` is a member of its tenant whose role may read billing; otherwise None (a 404:
    another tenant's invoice and an invoice one may not read look the same)."""
    if not getattr(user, "is_authenticated", False):
        return None
    invoice = Invoice.objects.filter(pk=invoice_id).only("id", "tenant_id").first()
    if invoice is None:
        return None
    membership = Membership.objects.filter(user=user, tenant_id=invoice.tenant_id).first()
    if membership is None or not role_allows(membership.role, Perm.BILLING_READ):
        return None
    return invoices_with_lines_of(tenant=invoice.tenant_id).get(pk=invoice.pk)


def invoice_clusters(invoice: Invoice) -> list[dict[str, Any]]:
    """The invoice's clusters, from its lines (prefetched: no query): `id`, `name` (as when the invoice was
    built), `node_count`, `quantity_seconds`, `quantity_hours` and `amount`, the sum of the nodes' lines,
    each already rounded to cents (so the clusters and the other lines add up to the subtotal)."""
    return cluster_subtotals(
        (
            {
                "cluster": line.cluster_id,
                "cluster_name": line.cluster_name,
                "rank": line.rank,
                "quantity_seconds": line.quantity_seconds,
                "amount": line.amount,
            }
            for line in invoice.lines.all()
        ),
        node_key="rank",
    )
