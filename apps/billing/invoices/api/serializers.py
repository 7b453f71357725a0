from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.billing.invoices.models import Invoice, InvoiceLine
from apps.billing.invoices.selectors import invoice_clusters
from apps.billing.stripe.models import CollectionState
from apps.billing.stripe.selectors import payment_status_of


class InvoiceLineSerializer(serializers.ModelSerializer[InvoiceLine]):
    quantity_hours = serializers.DecimalField(
        max_digits=20,
        decimal_places=6,
        read_only=True,
        help_text="quantity_seconds / 3600 with 6 places, for display; quantity_seconds is exact.",
    )
    cluster = serializers.UUIDField(
        source="cluster_id",
        read_only=True,
        allow_null=True,
        help_text="A node's line: the cluster it is grouped under (null for other lines).",
    )
    cluster_name = serializers.SerializerMethodField(
        help_text="The cluster's name when the invoice was built (null for other lines)."
    )

    class Meta:
        model = InvoiceLine
        fields = [
            "position",
            "meter",
            "description",
            "cluster",
            "cluster_name",
            "rank",
            "quantity_seconds",
            "quantity_hours",
            "unit_price_per_hour",
            "amount",
        ]
        read_only_fields = fields
        extra_kwargs = {"rank": {"help_text": "A node's rank in its cluster (null for other lines)."}}

    @extend_schema_field({"type": "string", "nullable": True})
    def get_cluster_name(self, obj: InvoiceLine) -> str | None:
        return obj.cluster_name if obj.cluster_id is not None else None


class InvoiceClusterSerializer(serializers.Serializer):
    """A cluster's subtotal on an invoice: the sum of its nodes' lines."""

    id = serializers.UUIDField()
    name = serializers.CharField(help_text="As when the invoice was built.")
    node_count = serializers.IntegerField(help_text="Nodes with lines on this invoice.")
    quantity_seconds = serializers.IntegerField()
    quantity_hours = serializers.DecimalField(max_digits=20, decimal_places=6)
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=2, help_text="The sum of the nodes' lines (each rounded to cents)."
    )


@extend_schema_field({"type": "string", "pattern": r"^\d{4}-\d{2}$", "example": "2026-10"})
class MonthField(serializers.DateField):
    """A date written as its month: the schema must not call "2026-10" a full date."""


PAYMENT_STATUS_HELP = (
    "Where payment stands: nothing_due (total zero); prepaid (a prepaid tenant's total is not charged: the "
    "wallet applied its credit and the rest is its negative balance, which the next top-up pays); pending "
    "(to be charged through Stripe); open (Stripe is charging the saved payment method); payment_failed (an "
    "attempt failed, Stripe retries; the tenant is past due); paid; void (cancelled, not owed); "
    "uncollectible (Stripe stopped trying; still owed)."
)


class InvoiceSerializer(serializers.ModelSerializer[Invoice]):
    month = MonthField(format="%Y-%m", read_only=True, help_text="The billed month, YYYY-MM.")
    payment_status = serializers.SerializerMethodField(help_text=PAYMENT_STATUS_HELP)

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "status",
            "month",
            "period_start",
            "period_end",
            "currency",
            "subtotal",
            "credits_applied",
            "total",
            "payment_status",
            "created_at",
            "finalized_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=CollectionState.choices))
    def get_payment_status(self, obj: Invoice) -> str:
        return payment_status_of(obj)


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)
    clusters = serializers.SerializerMethodField(
        help_text="Per-cluster subtotals of the nodes' lines (which are also in lines and the subtotal)."
    )

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines", "clusters"]
        read_only_fields = fields

    @extend_schema_field(InvoiceClusterSerializer(many=True))
    def get_clusters(self, obj: Invoice) -> Any:
        return InvoiceClusterSerializer(invoice_clusters(obj), many=True).data
