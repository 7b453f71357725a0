"""Tag budgets: a monthly budget for the usage carrying one tag, with this month's spend and the alerts sent
(50, 80 and 100 percent, by email; soft: nothing is refused). Through the API's serializers and the same
services (apps/billing/tag_budget_services.py), so the console refuses what the API refuses."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from apps.billing import tag_budget_selectors, tag_budget_services
from apps.billing.api.tag_budgets import TagBudgetCreateSerializer, TagBudgetUpdateSerializer
from apps.billing.models import TagBudget
from apps.console.views.page_helpers import form_error, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError
from apps.tenants.roles import Perm


def _rows(page: TenantPage) -> list[dict[str, Any]]:
    budgets = list(tag_budget_selectors.tag_budgets_of(tenant=page.tenant))
    now = timezone.now()
    spend = tag_budget_selectors.month_to_date_spend(budgets, now=now)
    alerts = tag_budget_selectors.alerts_sent(budgets, now=now)
    return [
        {
            "budget": budget,
            "spend": spend[budget.pk],
            "percent": spend[budget.pk] * 100 / budget.monthly_amount,
            "alerts": alerts.get(budget.pk, []),
        }
        for budget in budgets
    ]


def _context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    return {
        "rows": _rows(page),
        "can_write_billing": page.can(Perm.BILLING_WRITE),
        "form": {"key": "", "value": "", "monthly_amount": ""},
        "field_errors": {},
        **extra,
    }


def _budget(page: TenantPage, tag_budget_id: UUID) -> TagBudget:
    budget = tag_budget_selectors.tag_budget_of(tenant=page.tenant, budget_id=tag_budget_id)
    if budget is None:
        raise Http404("Not found.")
    return budget


@tenant_page(Perm.BILLING_READ, methods=("GET", "POST"), post_perm=Perm.BILLING_WRITE)
def tag_budgets(page: TenantPage) -> HttpResponse:
    if page.request.method != "POST":
        return page.render("console/account/tag_budgets.html", _context(page))
    post = page.request.POST
    form = {key: post.get(key, "") for key in ("key", "value", "monthly_amount")}
    try:
        page.require_status()
        data = validated(TagBudgetCreateSerializer, {**form, "key": form["key"].strip()})
        budget = tag_budget_services.tag_budget_create(actor=page.user, tenant=page.tenant, **data)
    except DomainError as exc:
        context = _context(page, form=form, form_name="create", **form_error(exc))
        return page.render("console/account/tag_budgets.html", context, status=exc.status_code)
    messages.success(
        page.request, f"The tag {budget.key}={budget.value} has a budget of {budget.monthly_amount}."
    )
    return redirect("console:tag_budgets", tenant_slug=page.tenant.slug)


@tenant_page(Perm.BILLING_WRITE, methods=("POST",))
def tag_budget_update(page: TenantPage, tag_budget_id: UUID) -> HttpResponse:
    budget = _budget(page, tag_budget_id)
    amount = page.request.POST.get("monthly_amount", "").strip()
    try:
        page.require_status()
        data = validated(TagBudgetUpdateSerializer, {"monthly_amount": amount})
        budget = tag_budget_services.tag_budget_update(
            actor=page.user, budget=budget, monthly_amount=data["monthly_amount"]
        )
    except DomainError as exc:
        context = _context(page, form_name=f"update-{budget.pk}", **form_error(exc))
        return page.render("console/account/tag_budgets.html", context, status=exc.status_code)
    messages.success(
        page.request, f"The budget of tag {budget.key}={budget.value} is {budget.monthly_amount}."
    )
    return redirect("console:tag_budgets", tenant_slug=page.tenant.slug)


@tenant_page(Perm.BILLING_WRITE, methods=("GET", "POST"))
def tag_budget_delete(page: TenantPage, tag_budget_id: UUID) -> HttpResponse:
    budget = _budget(page, tag_budget_id)
    if page.request.method != "POST":
        return page.render("console/account/tag_budget_delete.html", {"budget": budget})
    try:
        page.require_status(cleanup=True)
        tag_budget_services.tag_budget_delete(actor=page.user, budget=budget)
    except DomainError as exc:
        context = {"budget": budget, **form_error(exc)}
        return page.render("console/account/tag_budget_delete.html", context, status=exc.status_code)
    messages.success(page.request, f"Deleted the budget of tag {budget.key}={budget.value}.")
    return redirect("console:tag_budgets", tenant_slug=page.tenant.slug)
