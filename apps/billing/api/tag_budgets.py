"""Tag budgets through the API: /api/v1/tenants/{slug}/billing/tag-budgets[/{id}] (docs/billing.md "Tags").
Reading needs billing.read, writing billing.write; another tenant's budget answers 404."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.acting import acting_user
from apps.billing import tag_budget_selectors, tag_budget_services
from apps.billing.models import TagBudget
from apps.core import tags as core_tags
from apps.core.idempotency import idempotent
from apps.core.serializers import MoneyField, StrictInputSerializer
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm

PERCENT = Decimal("0.1")


class TagBudgetSerializer(serializers.ModelSerializer):
    month_to_date_spend = serializers.SerializerMethodField(
        help_text="This month's (UTC) usage carrying the tag: ledger rows as metered, plus the time not yet "
        "in the ledger of the instances and volumes carrying it now."
    )
    percent_used = serializers.SerializerMethodField(help_text="month_to_date_spend / monthly_amount x 100.")
    alerts_sent = serializers.SerializerMethodField(help_text="Thresholds alerted this month (50, 80, 100).")

    class Meta:
        model = TagBudget
        fields = [
            "id",
            "key",
            "value",
            "monthly_amount",
            "month_to_date_spend",
            "percent_used",
            "alerts_sent",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def _spend(self, budget: TagBudget) -> Decimal:
        spend: dict[Any, Decimal] = self.context["spend"]
        return spend[budget.pk]

    @extend_schema_field(serializers.DecimalField(max_digits=20, decimal_places=6))
    def get_month_to_date_spend(self, budget: TagBudget) -> str:
        return f"{self._spend(budget):f}"

    @extend_schema_field(serializers.DecimalField(max_digits=8, decimal_places=1))
    def get_percent_used(self, budget: TagBudget) -> str:
        return f"{(self._spend(budget) * 100 / budget.monthly_amount).quantize(PERCENT):f}"

    def get_alerts_sent(self, budget: TagBudget) -> list[int]:
        sent: dict[Any, list[int]] = self.context["alerts"]
        return sent.get(budget.pk, [])


def _context(budgets: Sequence[TagBudget]) -> dict[str, Any]:
    """What the serializer shows of each budget this month, read for all of them at once."""
    now = timezone.now()
    return {
        "spend": tag_budget_selectors.month_to_date_spend(budgets, now=now),
        "alerts": tag_budget_selectors.alerts_sent(budgets, now=now),
    }


class TagBudgetCreateSerializer(StrictInputSerializer):
    key = serializers.CharField(
        max_length=core_tags.MAX_KEY, help_text="A tag key (read in lower case), e.g. team."
    )
    value = serializers.CharField(
        max_length=core_tags.MAX_VALUE, allow_blank=True, trim_whitespace=False, help_text="e.g. ml"
    )
    monthly_amount = MoneyField(max_digits=14, decimal_places=2, min_value=0, help_text='USD, e.g. "500.00"')


class TagBudgetUpdateSerializer(StrictInputSerializer):
    monthly_amount = MoneyField(max_digits=14, decimal_places=2, min_value=0, help_text='USD, e.g. "750.00"')


class TagBudgetListView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ, "POST": Perm.BILLING_WRITE}
    serializer_class = TagBudgetSerializer

    def get_queryset(self) -> QuerySet[TagBudget]:
        return tag_budget_selectors.tag_budgets_of(tenant=self.tenant)

    @extend_schema(
        summary="List tag budgets",
        description="Each budget with its tag's month-to-date spend and the alerts sent this month, by key "
        "and value.",
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        assert page is not None
        return self.get_paginated_response(TagBudgetSerializer(page, many=True, context=_context(page)).data)

    @extend_schema(
        summary="Create a tag budget",
        description="A monthly budget for the usage tagged key=value: an email to owners and billing members "
        "and an audit event at 50, 80 and 100 percent of the tag's month-to-date spend, each once a month. "
        "Soft: nothing is refused or stopped. 409 tag_budget_exists when the tag has one; at most "
        f"{tag_budget_services.MAX_TAG_BUDGETS} per tenant. Honours Idempotency-Key.",
        request=TagBudgetCreateSerializer,
        responses={201: TagBudgetSerializer},
        examples=[
            OpenApiExample(
                "Team ml", request_only=True, value={"key": "team", "value": "ml", "monthly_amount": "500.00"}
            )
        ],
    )
    @idempotent
    def post(self, request: Request, tenant_slug: str) -> Response:
        serializer = TagBudgetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        budget = tag_budget_services.tag_budget_create(
            actor=acting_user(request), tenant=self.tenant, **serializer.validated_data
        )
        return Response(TagBudgetSerializer(budget, context=_context([budget])).data, status=201)


class TagBudgetDetailView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ, "PATCH": Perm.BILLING_WRITE, "DELETE": Perm.BILLING_WRITE}
    serializer_class = TagBudgetSerializer
    lookup_url_kwarg = "tag_budget_id"

    def get_queryset(self) -> QuerySet[TagBudget]:
        return tag_budget_selectors.tag_budgets_of(tenant=self.tenant)

    def render(self, budget: TagBudget) -> Response:
        return Response(TagBudgetSerializer(budget, context=_context([budget])).data)

    @extend_schema(summary="Show a tag budget")
    def get(self, request: Request, tenant_slug: str, tag_budget_id: str) -> Response:
        return self.render(self.get_object())

    @extend_schema(
        summary="Change a tag budget's monthly amount",
        description="Thresholds already alerted this month stay sent; the others can still fire.",
        request=TagBudgetUpdateSerializer,
        responses={200: TagBudgetSerializer},
    )
    def patch(self, request: Request, tenant_slug: str, tag_budget_id: str) -> Response:
        budget = self.get_object()  # another tenant's budget answers 404 whatever the body
        serializer = TagBudgetUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        budget = tag_budget_services.tag_budget_update(
            actor=acting_user(request),
            budget=budget,
            monthly_amount=serializer.validated_data["monthly_amount"],
        )
        return self.render(budget)

    @extend_schema(summary="Delete a tag budget", responses={204: None})
    def delete(self, request: Request, tenant_slug: str, tag_budget_id: str) -> Response:
        tag_budget_services.tag_budget_delete(actor=acting_user(request), budget=self.get_object())
        return Response(status=204)
