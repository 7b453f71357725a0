from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.billing.invoices import periods, rendering, selectors
from apps.billing.invoices.api.serializers import InvoiceDetailSerializer, InvoiceSerializer
from apps.billing.invoices.models import Invoice, InvoiceStatus
from apps.tenants.api.base import TenantAPIView
from apps.tenants.roles import Perm

# What payment_status reads (apps.billing.stripe.selectors.payment_status_of), fetched with the invoices.
WITH_PAYMENT = ("stripe_collection", "tenant__billing_account")


class MonthField(forms.CharField):
    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        if not value:
            return None
        try:
            return periods.parse_month(value)
        except ValueError as exc:
            raise forms.ValidationError("Use YYYY-MM, e.g. 2026-11.") from exc


class MonthFilter(django_filters.CharFilter):
    field_class = MonthField


class InvoiceFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=InvoiceStatus.choices)
    month = MonthFilter(field_name="month", help_text="The billed month, YYYY-MM.")

    class Meta:
        model = Invoice
        fields: list[str] = []


class InvoiceListView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ}
    serializer_class = InvoiceSerializer
    filterset_class = InvoiceFilter
    ordering_fields = ["month", "created_at", "total"]
    ordering = ["-month"]

    def get_queryset(self) -> QuerySet[Invoice]:
        return selectors.invoices_of(tenant=self.tenant).select_related(*WITH_PAYMENT)

    @extend_schema(
        summary="List invoices",
        description="Monthly invoices, newest month first. Lines are in the detail.",
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(InvoiceSerializer(page, many=True).data)


class InvoiceObjectMixin(TenantAPIView):
    lookup_url_kwarg = "invoice_id"
    permission_map = {"GET": Perm.BILLING_READ}
    serializer_class = InvoiceDetailSerializer

    def get_queryset(self) -> QuerySet[Invoice]:
        return selectors.invoices_with_lines_of(tenant=self.tenant).select_related(*WITH_PAYMENT)


class InvoiceDetailView(InvoiceObjectMixin):
    @extend_schema(
        summary="Show an invoice with its lines",
        description="One line per meter and unit price: quantity in exact seconds and in hours (6 places), "
        "the hourly price, and the amount rounded to cents once per line. A node of a cluster has lines of "
        "its own naming its cluster and rank, and `clusters` gives each cluster's subtotal.",
    )
    def get(self, request: Request, tenant_slug: str, invoice_id: str) -> Response:
        return Response(InvoiceDetailSerializer(self.get_object()).data)


class InvoiceHtmlView(InvoiceObjectMixin):
    # One document, not a page of a list: without these the schema offered limit/offset/ordering.
    pagination_class = None
    filter_backends: list[Any] = []

    @extend_schema(
        summary="Download an invoice as printable HTML",
        description="The invoice page as an attachment (print it, or save it as PDF from the browser).",
        responses={(200, "text/html"): OpenApiResponse(OpenApiTypes.STR, description="The invoice page.")},
    )
    def get(self, request: Request, tenant_slug: str, invoice_id: str) -> HttpResponse:
        invoice = self.get_object()
        response = HttpResponse(rendering.render_html(invoice), content_type="text/html; charset=utf-8")
        name = invoice.number or f"draft-{invoice.pk}"
        response["Content-Disposition"] = f'attachment; filename="invoice-{name}.html"'
        return response
