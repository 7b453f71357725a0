from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.billing.invoices.models import Invoice, InvoiceLine


class InvoiceLineSerializer(serializers.ModelSerializer[InvoiceLine]):
    quantity_hours = serializers.DecimalField(
        max_digits=20,
        decimal_places=6,
        read_only=True,
        help_text="quantity_seconds / 3600 with 6 places, for display; quantity_seconds is exact.",
    )

    class Meta:
        model = InvoiceLine
        fields = [
            "position",
            "meter",
            "description",
            "quantity_seconds",
            "quantity_hours",
            "unit_price_per_hour",
            "amount",
        ]
        read_only_fields = fields


@extend_schema_field({"type": "string", "pattern": r"^\d{4}-\d{2}$", "example": "2026-10"})
class MonthField(serializers.DateField):
    """A date written as its month: the schema must not call "2026-10" a full date."""


class InvoiceSerializer(serializers.ModelSerializer[Invoice]):
    month = MonthField(format="%Y-%m", read_only=True, help_text="The billed month, YYYY-MM.")

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
            "created_at",
            "finalized_at",
        ]
        read_only_fields = fields


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, read_only=True)

    class Meta(InvoiceSerializer.Meta):
        fields = [*InvoiceSerializer.Meta.fields, "lines"]
        read_only_fields = fields
