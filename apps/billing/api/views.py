"""The wallet through the API: usage, balance, budget and credits per tenant; the usage export and invoice
PDFs (downloads); staff grants and the billing mode under /api/v1/staff/ (staff sessions only; everyone
else gets 404)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import two_factor
from apps.accounts.acting import acting_user
from apps.accounts.models import ApiToken
from apps.billing import exports, selectors, services
from apps.billing.api.serializers import (
    BalanceSerializer,
    BillingModeSerializer,
    BudgetSerializer,
    BudgetStatusSerializer,
    CreditGrantCreateSerializer,
    CreditGrantSerializer,
    UsageExportLineSerializer,
    UsageExportQuerySerializer,
    UsageQuerySerializer,
    UsageReportSerializer,
)
from apps.billing.invoices import rendering
from apps.billing.invoices.api.views import InvoiceObjectMixin
from apps.billing.models import BudgetAlert, CreditGrant
from apps.core import tags as core_tags
from apps.core.errors import Forbidden, NotFound
from apps.core.idempotency import idempotent
from apps.tenants.api.base import TenantAPIView
from apps.tenants.models import Tenant
from apps.tenants.roles import Perm


class UsageView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ}
    serializer_class = UsageReportSerializer
    pagination_class = None
    repeatable_query_params = frozenset({"tag"})  # apps/core/request_limits.py: tag=a:1&tag=b:2 is AND

    @extend_schema(
        summary="Usage from the ledger, grouped",
        description="Rated usage rows whose period starts within [from, to), summed per instance, instance "
        "type, UTC day or value of a tag (`group_by=tag:<key>`: one group per value, and the usage without "
        "the tag in one group whose key is null, named untagged). Defaults: this month so far, grouped by "
        "instance type. The range is at most 400 days. `tag=<key>:<value>` (repeatable: all must hold) "
        "counts only the rows carrying the tag; a row carries its resource's tags as they were when it was "
        'metered (docs/billing.md "Tags"). Running time not yet closed into the ledger shows in the '
        "balance, not here. Nodes of a cluster are billed as instances: grouped per instance, each node's "
        "group names its cluster and rank, and `clusters` gives each cluster's subtotal.",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="ISO 8601, inclusive"),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="ISO 8601, exclusive"),
            OpenApiParameter(
                "group_by",
                OpenApiTypes.STR,
                description=f"{', '.join(selectors.GROUPS)} (default instance_type), or tag:<key> (e.g. "
                "tag:team)",
            ),
            OpenApiParameter(
                "tag",
                OpenApiTypes.STR,
                many=True,
                explode=True,
                description="<key>:<value>, e.g. team:ml; repeat it for usage carrying all of them",
            ),
        ],
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        # A plain dict: DRF reads "" in a QueryDict as "not given", so ?from= was silently this month.
        query = UsageQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        start, end, group_by = (query.validated_data[k] for k in ("start", "end", "group_by"))
        tags = core_tags.parse_filters(request.query_params.getlist("tag"), field="tag")
        results = selectors.usage_report(
            tenant=self.tenant, start=start, end=end, group_by=group_by, tags=tags
        )
        total = sum((row["amount"] for row in results), selectors.ZERO)
        clusters = selectors.usage_clusters(
            tenant=self.tenant,
            start=start,
            end=end,
            by_instance=results if group_by == "instance" else None,
            tags=tags,
        )
        report = {
            "from": start,
            "to": end,
            "group_by": group_by,
            "tags": tags,
            "total": total,
            "results": results,
            "clusters": clusters,
        }
        return Response(UsageReportSerializer(report).data)


class BalanceView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ}
    serializer_class = BalanceSerializer
    pagination_class = None

    @extend_schema(
        summary="Wallet balance, burn rate and runway",
        description="balance = credits - usage, exact to the second: closed ledger rows plus the running "
        "time of instances not yet in the ledger. runway_seconds is null when nothing is running.",
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response(BalanceSerializer(selectors.wallet_of(self.tenant)).data)


def _budget_status(tenant: Tenant) -> dict[str, Any]:
    now = timezone.now()
    w = selectors.wallet_of(tenant, now)
    alerts = BudgetAlert.objects.filter(tenant=tenant, month=selectors.month_start(now).date())
    return {
        "monthly_budget": w.monthly_budget,
        "hard": w.budget_hard,
        "month_to_date_spend": w.month_to_date_spend,
        "alerts_sent": sorted(alerts.values_list("threshold", flat=True)),
    }


class BudgetView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ, "PUT": Perm.BILLING_WRITE}
    serializer_class = BudgetStatusSerializer
    pagination_class = None

    @extend_schema(summary="Show the monthly budget and month-to-date spend")
    def get(self, request: Request, tenant_slug: str) -> Response:
        return Response(BudgetStatusSerializer(_budget_status(self.tenant)).data)

    @extend_schema(
        summary="Set the monthly budget",
        description="Alerts (email to owners and billing members, and an audit event) at 50, 80 and 100 "
        "percent, each once per month. A hard budget also refuses launches and starts (402 "
        "insufficient_funds) and stops running instances once spent. monthly_budget null removes it.",
        request=BudgetSerializer,
        responses={200: BudgetStatusSerializer},
    )
    def put(self, request: Request, tenant_slug: str) -> Response:
        serializer = BudgetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.budget_set(
            actor=acting_user(request),
            tenant=self.tenant,
            monthly_budget=serializer.validated_data["monthly_budget"],
            hard=serializer.validated_data["hard"],
        )
        return Response(BudgetStatusSerializer(_budget_status(self.tenant)).data)


class CreditListView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ}
    serializer_class = CreditGrantSerializer

    def get_queryset(self) -> QuerySet[CreditGrant]:
        return selectors.credit_grants_of(tenant=self.tenant)

    @extend_schema(
        summary="List credit grants",
        description="Each grant with what remains of it: usage draws down the grant expiring soonest first.",
    )
    def get(self, request: Request, tenant_slug: str) -> Response:
        now = timezone.now()
        page = self.paginate_queryset(self.get_queryset())
        context = {"remaining": selectors.wallet_of(self.tenant, now).remaining, "now": now}
        return self.get_paginated_response(CreditGrantSerializer(page, many=True, context=context).data)


# --- staff ---------------------------------------------------------------------------------------------


class StaffTenantView(GenericAPIView):
    """Staff signed in with a session only; API tokens and everyone else get 404, as if it did not exist. The
    session must have passed its second factor: checked here too, not only by the two-factor middleware, so
    no way around the middleware reaches staff powers."""

    pagination_class = None
    tenant: Tenant

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        user = request.user
        if isinstance(request.auth, ApiToken) or not getattr(user, "is_staff", False):
            raise NotFound("Not found.")
        if not two_factor.session_is_verified(user):
            raise Forbidden(two_factor.SESSION_NOT_VERIFIED, code="two_factor_required")
        tenant = Tenant.objects.filter(slug=kwargs["staff_tenant_slug"]).first()
        if tenant is None:
            raise NotFound("Not found.")
        self.tenant = tenant


class StaffCreditGrantView(StaffTenantView):
    serializer_class = CreditGrantSerializer

    @extend_schema(
        summary="Staff: grant credit to a tenant",
        description="Staff sessions only. Promotional credit usually has an expiry; paid credit never "
        "expires.",
        request=CreditGrantCreateSerializer,
        responses={201: CreditGrantSerializer},
    )
    @idempotent
    def post(self, request: Request, staff_tenant_slug: str) -> Response:
        serializer = CreditGrantCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant = services.credit_grant_create(
            tenant=self.tenant, actor=acting_user(request), **serializer.validated_data
        )
        return Response(CreditGrantSerializer(grant).data, status=201)


class StaffBillingModeView(StaffTenantView):
    serializer_class = BillingModeSerializer

    @extend_schema(
        summary="Staff: switch a tenant between prepaid and postpaid",
        description="Staff sessions only. Postpaid tenants may run up to credit_limit below zero.",
        request=BillingModeSerializer,
        responses={200: BillingModeSerializer},
    )
    def put(self, request: Request, staff_tenant_slug: str) -> Response:
        serializer = BillingModeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = services.billing_mode_set(
            actor=acting_user(request),
            tenant=self.tenant,
            mode=serializer.validated_data["mode"],
            credit_limit=serializer.validated_data.get("credit_limit"),
        )
        return Response(BillingModeSerializer(account).data)


# --- downloads: the usage export and invoice PDFs ---------------------------------------------------------


class JsonErrors(BaseContentNegotiation):
    """Downloads answer their own media type whatever the Accept header says, and `?format=` is the usage
    export's own parameter (csv or json), not DRF's renderer override (which answered 404 for csv); their
    refusals are JSON like every other error."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class UsageExportView(TenantAPIView):
    permission_map = {"GET": Perm.BILLING_READ}
    content_negotiation_class = JsonErrors
    serializer_class = UsageExportLineSerializer
    pagination_class = None
    filter_backends: list[Any] = []

    @extend_schema(
        operation_id="tenants_billing_usage_export",
        summary="Export ledger lines as CSV or JSON",
        description="Every ledger row whose period starts within [from, to), one line each, in time order: "
        "id, resource type, id and name, meter, period start and end, seconds, hourly price, amount, kind, "
        "the row it reverses and tags. Money is a decimal string (prices 4 places, amounts 6). CSV has a "
        "header row and tags as a JSON object; JSON is an array of the objects below. Streamed as it is "
        "read, as an attachment. Defaults: this month so far, CSV; at most 400 days. A date is midnight "
        "UTC.",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="ISO 8601 date or time, inclusive"),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="ISO 8601 date or time, exclusive"),
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(exports.FORMATS), default="csv"),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="A header, then a row a line."),
            (200, "application/json"): UsageExportLineSerializer(many=True),
        },
    )
    def get(self, request: Request, tenant_slug: str) -> StreamingHttpResponse:
        query = UsageExportQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        start, end, fmt = (query.validated_data[k] for k in ("start", "end", "format"))
        return exports.download(tenant=self.tenant, start=start, end=end, fmt=fmt)


class InvoicePdfView(InvoiceObjectMixin):
    content_negotiation_class = JsonErrors
    pagination_class = None
    filter_backends: list[Any] = []

    @extend_schema(
        summary="Download an invoice as PDF",
        description="The printable invoice laid out on A4 pages, as an attachment. 503 pdf_unavailable "
        "where this server cannot render PDF (then download it as HTML).",
        responses={(200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF.")},
    )
    def get(self, request: Request, tenant_slug: str, invoice_id: str) -> HttpResponse:
        invoice = self.get_object()
        response = HttpResponse(rendering.render_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{rendering.download_name(invoice, "pdf")}"'
        return response
