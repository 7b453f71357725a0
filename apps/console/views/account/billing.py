"""Billing: the wallet, usage charts, the usage export, invoices (page and PDF) and budget alerts; top-ups
and card set-up through Stripe Checkout; the monthly budget."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone

from apps.billing import exports
from apps.billing import selectors as billing_selectors
from apps.billing import services as billing_services
from apps.billing.api.serializers import BudgetSerializer, UsageExportQuerySerializer
from apps.billing.invoices.selectors import invoices_of
from apps.billing.models import BudgetAlert
from apps.billing.stripe import checkout as stripe_checkout
from apps.billing.stripe import gateway as stripe_gateway
from apps.billing.stripe.api.serializers import TopupRequestSerializer
from apps.billing.stripe.selectors import billing_status_of, card_on_file
from apps.catalog.models import InstanceType
from apps.console import charts
from apps.console.charts import bar_chart
from apps.console.views.page_helpers import form_error, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError
from apps.tenants.models import Tenant
from apps.tenants.roles import Perm


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def usage_by_gpu_type(*, tenant: Tenant, start: datetime, end: datetime) -> list[tuple[str, Decimal]]:
    """The ledger grouped by instance type, summed per GPU type of the type (CPU for GPU-less types)."""
    rows = billing_selectors.usage_report(tenant=tenant, start=start, end=end, group_by="instance_type")
    gpu_of = {
        slug: (gpu or "CPU")
        for slug, gpu in InstanceType.objects.filter(slug__in=[r["key"] for r in rows]).values_list(
            "slug", "gpu_type__slug"
        )
    }
    totals: dict[str, Decimal] = {}
    for row in rows:
        label = gpu_of.get(row["key"], row["key"])
        totals[label] = totals.get(label, Decimal(0)) + row["amount"]
    return [(label, _cents(amount)) for label, amount in sorted(totals.items())]


def _runway(seconds: int | None) -> str:
    if seconds is None:
        return "No instances are running."
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest // 60} min"


def _export_defaults(month: datetime) -> dict[str, str]:
    """This month, as whole UTC days: from its first day to the first of the next (exclusive)."""
    following = (month + timedelta(days=32)).replace(day=1)
    return {"from": f"{month:%Y-%m-%d}", "to": f"{following:%Y-%m-%d}", "format": "csv"}


def _billing_context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    now = timezone.now()
    start = billing_selectors.month_start(now)
    wallet = billing_selectors.wallet_of(page.tenant, now)
    alerts = BudgetAlert.objects.filter(tenant=page.tenant, month=start.date()).order_by("threshold")
    status = page.request.GET
    notice = None
    if status.get("topup") == "success":
        notice = "Thank you: the credit appears here as soon as Stripe confirms the payment."
    elif status.get("card") == "success":
        notice = "Your card is saved."
    defaults = dict(
        wallet=wallet,
        balance=_cents(wallet.balance),
        burn_rate=_cents(wallet.burn_rate_per_hour),
        month_to_date=_cents(wallet.month_to_date_spend),
        runway=_runway(wallet.runway_seconds),
        month=start,
        by_day=bar_chart(
            charts.spend_by_day(tenant=page.tenant, start=start, end=now), short=lambda day: day[-2:]
        ),
        by_gpu=bar_chart(usage_by_gpu_type(tenant=page.tenant, start=start, end=now), bar_width=60),
        invoices=invoices_of(tenant=page.tenant).order_by("-month")[:24],
        alerts=alerts,
        payments_configured=stripe_gateway.is_configured(),
        card_on_file=card_on_file(tenant=page.tenant),
        billing_status=billing_status_of(tenant=page.tenant),
        budget_form={
            "monthly_budget": "" if wallet.monthly_budget is None else str(wallet.monthly_budget),
            "hard": wallet.budget_hard,
        },
        topup_form={"amount": ""},
        export_form=_export_defaults(start),
        notice=notice,
    )
    return page.context(can_write_billing=page.can(Perm.BILLING_WRITE), **{**defaults, **extra})


def _billing_error(page: TenantPage, exc: DomainError, **extra: Any) -> HttpResponse:
    context = _billing_context(page, **extra)
    context.update(form_error(exc))
    return render(page.request, "console/account/billing.html", context, status=exc.status_code)


@tenant_page(Perm.BILLING_READ)
def billing(page: TenantPage) -> HttpResponse:
    return render(page.request, "console/account/billing.html", _billing_context(page))


def _payments_off(page: TenantPage, **extra: Any) -> HttpResponse:
    """Stripe is not configured on this installation: the page says so (payments_configured) instead of
    failing."""
    return render(page.request, "console/account/billing.html", _billing_context(page, **extra))


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def billing_topup(page: TenantPage) -> HttpResponse:
    form = {"amount": page.request.POST.get("amount", "").strip()}
    try:
        page.require_status(cleanup=True)  # a suspended tenant must still be able to pay, as in the API
        data = validated(TopupRequestSerializer, form)
        opened = stripe_checkout.checkout_topup_create(
            actor=page.user, tenant=page.tenant, amount=data["amount"]
        )
    except stripe_gateway.StripeNotConfigured:
        return _payments_off(page, topup_form=form, form_name="topup")
    except DomainError as exc:
        return _billing_error(page, exc, topup_form=form, form_name="topup")
    return HttpResponseRedirect(opened.url)


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def billing_card(page: TenantPage) -> HttpResponse:
    try:
        page.require_status(cleanup=True)
        opened = stripe_checkout.checkout_card_setup_create(actor=page.user, tenant=page.tenant)
    except stripe_gateway.StripeNotConfigured:
        return _payments_off(page, form_name="card")
    except DomainError as exc:
        return _billing_error(page, exc, form_name="card")
    return HttpResponseRedirect(opened.url)


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def billing_budget(page: TenantPage) -> HttpResponse:
    post = page.request.POST
    form = {"monthly_budget": post.get("monthly_budget", "").strip(), "hard": post.get("hard") == "on"}
    try:
        page.require_status()
        data = validated(
            BudgetSerializer, {"monthly_budget": form["monthly_budget"] or None, "hard": form["hard"]}
        )
        billing_services.budget_set(
            actor=page.user, tenant=page.tenant, monthly_budget=data["monthly_budget"], hard=data["hard"]
        )
    except DomainError as exc:
        return _billing_error(page, exc, budget_form=form, form_name="budget")
    if data["monthly_budget"] is None:
        messages.success(page.request, "The monthly budget is removed.")
    else:
        kind = "hard" if data["hard"] else "soft"
        messages.success(page.request, f"The monthly budget is {data['monthly_budget']} ({kind}).")
    return redirect("console:billing", tenant_slug=page.tenant.slug)


@tenant_page(Perm.BILLING_READ)
def billing_usage_export(page: TenantPage) -> Any:  # HttpResponse, or the StreamingHttpResponse of the file
    """The usage export form's download (GET): the API's validation and the same streamed file."""
    query = page.request.GET
    form = {"from": query.get("from", "").strip(), "to": query.get("to", "").strip()}
    form["format"] = query.get("format", "csv").strip()  # a link without it downloads CSV, as the API does
    try:
        data = validated(UsageExportQuerySerializer, form)
    except DomainError as exc:
        return _billing_error(page, exc, export_form=form, form_name="export")
    return exports.download(tenant=page.tenant, start=data["start"], end=data["end"], fmt=data["format"])
