from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone
from rest_framework import serializers

from apps.billing.exports import FORMATS
from apps.billing.models import AMOUNT_PLACES, BillingMode, CreditGrant, CreditKind, LedgerKind
from apps.billing.selectors import GROUPS, TAG_GROUP, month_start
from apps.core import tags as core_tags
from apps.core.errors import InvalidInput
from apps.core.serializers import MoneyField

MAX_RANGE = timedelta(days=400)
CENTS = Decimal("0.01")


class PeriodQuerySerializer(serializers.Serializer):
    """?from=&to= of the usage reads: `from` is a Python keyword, so the field is added by name."""

    to = serializers.DateTimeField(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(required=False)
        return fields


def period_of(attrs: dict[str, Any]) -> dict[str, Any]:
    """[start, end) from validated from/to: default this month so far, from < to, at most 400 days."""
    now = timezone.now()
    end = attrs.get("to") or now
    start = attrs.get("from") or month_start(min(end, now))
    if start >= end:
        raise serializers.ValidationError({"to": ["Must be later than from."]})
    if end - start > MAX_RANGE:
        raise serializers.ValidationError({"to": ["At most 400 days after from."]})
    return {"start": start, "end": end}


class UsageQuerySerializer(PeriodQuerySerializer):
    """?from=&to=&group_by=: ISO 8601 datetimes (default: this month so far), at most 400 days apart;
    group_by one of GROUPS or tag:<key>. (The repeatable tag=<key>:<value> is read by the view.)"""

    to = serializers.DateTimeField(required=False)
    group_by = serializers.CharField(required=False, default="instance_type", max_length=100)

    def validate_group_by(self, value: str) -> str:
        if value in GROUPS:
            return value
        if not value.startswith(TAG_GROUP):
            choices = ", ".join([*GROUPS, f"{TAG_GROUP}<key>"])
            raise serializers.ValidationError(f"Must be one of {choices}.")
        try:
            key = core_tags.normalize_key(value.removeprefix(TAG_GROUP), field="group_by")
        except InvalidInput as exc:
            raise serializers.ValidationError(exc.fields["group_by"]) from exc
        return f"{TAG_GROUP}{key}"

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {**period_of(attrs), "group_by": attrs.get("group_by", "instance_type")}


class UsageGroupSerializer(serializers.Serializer):
    key = serializers.CharField(
        allow_null=True,
        help_text="The instance's id, the instance type, the day, or the tag's value; null only for the "
        "usage without the tag (group_by=tag:<key>).",
    )
    name = serializers.CharField(help_text='A readable name; "untagged" for the usage without the tag.')
    cluster = serializers.UUIDField(
        allow_null=True, help_text="group_by=instance: the cluster this instance is a node of; else null."
    )
    cluster_name = serializers.CharField(allow_null=True, help_text="The cluster's name, or null.")
    rank = serializers.IntegerField(allow_null=True, help_text="The node's rank in its cluster, or null.")
    quantity_seconds = serializers.IntegerField()
    quantity_hours = serializers.DecimalField(max_digits=20, decimal_places=6)
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)


class UsageClusterSerializer(serializers.Serializer):
    """A cluster's subtotal: the exact sum of its nodes' usage in the range."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    node_count = serializers.IntegerField(help_text="Nodes with usage in the range.")
    quantity_seconds = serializers.IntegerField()
    quantity_hours = serializers.DecimalField(max_digits=20, decimal_places=6)
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)


class UsageReportSerializer(serializers.Serializer):
    group_by = serializers.CharField()
    tags = serializers.DictField(
        child=serializers.CharField(),
        help_text="The tag filter applied (every tag=<key>:<value>), {} for none: results, total and "
        "clusters count only the usage carrying all of them.",
    )
    total = serializers.DecimalField(max_digits=20, decimal_places=6)
    results = UsageGroupSerializer(many=True)
    clusters = UsageClusterSerializer(
        many=True,
        help_text="Per-cluster subtotals over the same range, whatever group_by; their usage is also in "
        "results and total (not added twice).",
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # Declared here, not as attributes, because "from" is a Python keyword; the schema then shows the
        # names the response really has (it used to document start/end).
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField()
        fields["to"] = serializers.DateTimeField()
        return fields


class BalanceSerializer(serializers.Serializer):
    balance = serializers.DecimalField(max_digits=20, decimal_places=6)
    credits = serializers.DecimalField(max_digits=20, decimal_places=6)
    usage = serializers.DecimalField(max_digits=20, decimal_places=6, source="usage_total")
    burn_rate_per_hour = serializers.DecimalField(max_digits=14, decimal_places=4)
    runway_seconds = serializers.IntegerField(allow_null=True)
    month_to_date_spend = serializers.DecimalField(max_digits=20, decimal_places=6)
    mode = serializers.ChoiceField(choices=BillingMode.choices)
    credit_limit = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.SerializerMethodField()
    as_of = serializers.DateTimeField()

    def get_currency(self, obj: Any) -> str:
        return "USD"


class BudgetSerializer(serializers.Serializer):
    monthly_budget = MoneyField(
        max_digits=14, decimal_places=2, allow_null=True, min_value=0, help_text="null: no budget"
    )
    hard = serializers.BooleanField(
        default=False, help_text="Refuse launches and stop instances once the budget is spent."
    )


class BudgetStatusSerializer(BudgetSerializer):
    month_to_date_spend = serializers.DecimalField(max_digits=20, decimal_places=6, read_only=True)
    alerts_sent = serializers.ListField(child=serializers.IntegerField(), read_only=True)


class CreditGrantSerializer(serializers.ModelSerializer):
    remaining = serializers.SerializerMethodField()
    reversed = serializers.SerializerMethodField(
        help_text="Taken back by refunds and chargebacks of this top-up (net of disputes won)."
    )
    expired = serializers.SerializerMethodField()

    class Meta:
        model = CreditGrant
        fields = [
            "id",
            "kind",
            "amount",
            "reversed",
            "remaining",
            "reason",
            "expires_at",
            "expired",
            "created_at",
        ]

    def get_remaining(self, obj: CreditGrant) -> str:
        remaining = self.context.get("remaining", {}).get(str(obj.pk))
        return str((remaining if remaining is not None else obj.amount).quantize(AMOUNT_PLACES))

    def get_reversed(self, obj: CreditGrant) -> str:
        value = getattr(obj, "reversed", None)
        if value is None:  # not from credit_grants_of (e.g. a grant just created): read it
            value = obj.reversals.aggregate(total=Sum("amount"))["total"] or Decimal("0")
        return str(Decimal(value).quantize(CENTS))

    def get_expired(self, obj: CreditGrant) -> bool:
        return obj.expires_at is not None and obj.expires_at <= self.context.get("now", timezone.now())


class CreditGrantCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CreditKind.choices, default=CreditKind.PROMOTIONAL)
    amount = MoneyField(max_digits=14, decimal_places=2, min_value=0)
    reason = serializers.CharField(max_length=300)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class BillingModeSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=BillingMode.choices)
    credit_limit = MoneyField(max_digits=14, decimal_places=2, min_value=0, required=False)


# --- usage export ------------------------------------------------------------------------------------------


class UsageExportQuerySerializer(PeriodQuerySerializer):
    """?from=&to=&format= of the usage export: ISO 8601 dates or datetimes (a date is midnight UTC; default:
    this month so far), at most 400 days apart, and csv (default) or json."""

    to = serializers.DateTimeField(required=False)
    format = serializers.ChoiceField(choices=FORMATS, required=False, default="csv")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {**period_of(attrs), "format": attrs.get("format", "csv")}


class UsageExportLineSerializer(serializers.Serializer):
    """One line of the export (a ledger row): the JSON format's objects, and the CSV's columns in order."""

    id = serializers.CharField(help_text="The ledger row's deterministic id.")
    resource_type = serializers.CharField(help_text="instance, volume or bucket.")
    resource_id = serializers.CharField()
    resource_name = serializers.CharField(help_text="The resource's name now; empty when it has none.")
    meter = serializers.CharField(help_text="e.g. instance_seconds:gpu-h100x1")
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField(help_text="Exclusive.")
    quantity_seconds = serializers.IntegerField()
    unit_price_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4)
    amount = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="USD, 6 places.")
    kind = serializers.CharField(help_text=f"{', '.join(LedgerKind.values)}.")
    reverses = serializers.CharField(
        allow_null=True, help_text="The row a reversal or correction undoes; null (CSV: empty) otherwise."
    )
    tags = serializers.DictField(
        child=serializers.CharField(), help_text="The resource's tags when metered (CSV: a JSON object)."
    )
