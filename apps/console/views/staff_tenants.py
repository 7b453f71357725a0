"""Staff pages for tenants: the list with usage and balance, one tenant's page, and what staff do to it
(suspend, reactivate, close, grant credit, set quota limits), each through the owning app's audited
service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from apps.billing import services as billing_services
from apps.billing.models import CreditKind
from apps.console import staff_selectors
from apps.console.views.page_helpers import day_start, form_error, paginate, parse_day
from apps.console.views.staff import choice, staff_page
from apps.core.errors import DomainError, InvalidInput
from apps.quotas import services as quota_services
from apps.quotas.selectors import quota_overview, quota_requests_of
from apps.tenants import services as tenant_services
from apps.tenants.models import TenantStatus

TENANTS_PAGE_SIZE = 25

# What each status action does, for its confirmation page; suspend needs a reason, close may have one.
STATUS_ACTIONS = {
    "suspend": "The tenant can no longer launch or start instances, and its running instances are stopped "
    "(not deleted; volumes kept). They can still be terminated. Its members see the reason on every page, "
    "and its owners and admins get an email.",
    "reactivate": "The tenant can launch and start instances again. Instances its suspension stopped stay "
    "stopped until the customer starts them; the owners and admins get an email naming them.",
    "close": "The tenant can only be read from now on: its instances are terminated, its volumes deleted, "
    "its API tokens and storage access keys revoked and its open invitations cancelled; its buckets are kept "
    "(unbilled) for the retention period, then deleted. A closed tenant cannot be reopened.",
}
QUOTA_LABELS = {
    "max_instances": "Instances",
    "max_gpus": "GPUs (all types)",
    "max_vcpu": "vCPU",
    "max_memory_gib": "Memory (GiB)",
    "max_volume_gib": "Volume storage (GiB)",
    "max_object_storage_gib": "Object storage (GiB)",
}


@staff_page()
def tenants(request: HttpRequest) -> HttpResponse:
    filters = {"status": request.GET.get("status", "").strip(), "q": request.GET.get("q", "").strip()[:254]}
    context: dict[str, Any] = {"filters": filters, "statuses": TenantStatus.choices}
    try:
        choice(filters["status"], TenantStatus.values, "status")
    except DomainError as exc:
        context.update(page_obj=None, rows=[], **form_error(exc))
        return render(request, "console/staff/tenants.html", context, status=exc.status_code)
    tenant_list = staff_selectors.tenants_for_staff(status=filters["status"], search=filters["q"])
    page_obj, querystring = paginate(request, tenant_list, TENANTS_PAGE_SIZE)
    rows = staff_selectors.tenant_rows(list(page_obj.object_list))
    context.update(page_obj=page_obj, rows=rows, querystring=querystring)
    return render(request, "console/staff/tenants.html", context)


def _row(slug: str) -> staff_selectors.TenantRow:
    row = staff_selectors.tenant_row(slug=slug)
    if row is None:
        raise Http404("Not found.")
    return row


def _detail(
    request: HttpRequest, row: staff_selectors.TenantRow, status: int = 200, **extra: Any
) -> HttpResponse:
    target = row.tenant
    overview = quota_overview(tenant=target)
    quota = quota_services.quota_for(target)
    context: dict[str, Any] = {
        "row": row,
        "target": target,
        "limits": overview["limits"],
        "gpu_limits": overview["gpu_types"],
        "recent_instances": staff_selectors.recent_instances_of(tenant=target),
        "grants": staff_selectors.recent_credit_grants_of(tenant=target),
        "pending_requests": list(quota_requests_of(tenant=target).filter(status="pending")),
        "credit_kinds": CreditKind.choices,
        "credit_form": {"kind": CreditKind.PROMOTIONAL, "amount": "", "expires_at": "", "reason": ""},
        "quota_form": {
            name: {"label": label, "value": getattr(quota, name), "errors": []}
            for name, label in QUOTA_LABELS.items()
        },
        "quota_note": "",
        **extra,
    }
    return render(request, "console/staff/tenant_detail.html", context, status=status)


@staff_page()
def tenant_detail(request: HttpRequest, staff_tenant_slug: str) -> HttpResponse:
    return _detail(request, _row(staff_tenant_slug))


@staff_page(methods=("GET", "POST"))
def tenant_status(request: HttpRequest, staff_tenant_slug: str, action: str) -> HttpResponse:
    row = _row(staff_tenant_slug)
    target = row.tenant
    reason = request.POST.get("reason", "").strip()
    context: dict[str, Any] = {
        "target": target,
        "action": action,
        "explanation": STATUS_ACTIONS[action],
        "reason": reason,
    }
    if request.method == "POST":
        actor: Any = request.user
        try:
            if len(reason) > 500:
                raise InvalidInput(
                    "reason: at most 500 characters.", fields={"reason": ["At most 500 characters."]}
                )
            stopped: list[dict[str, str]] = []
            if action == "suspend":
                target = tenant_services.tenant_suspend(actor=actor, tenant=target, reason=reason)
                stopped = target.suspension_stopped_instances
            elif action == "reactivate":
                was_suspended = target.status == TenantStatus.SUSPENDED
                target = tenant_services.tenant_reactivate(actor=actor, tenant=target)
                stopped = target.suspension_stopped_instances if was_suspended else []
            else:
                tenant_services.tenant_close(actor=actor, tenant=target, reason=reason)
        except DomainError as exc:
            context.update(form_error(exc))
            return render(request, "console/staff/tenant_status.html", context, status=exc.status_code)
        messages.success(request, _status_message(action, target.name, stopped))
        return redirect("console:staff_tenant", staff_tenant_slug=target.slug)
    return render(request, "console/staff/tenant_status.html", context)


def _status_message(action: str, name: str, stopped: list[dict[str, str]]) -> str:
    """What staff read after a status change; suspend and reactivate name the instances the suspension
    stopped (which stay stopped after the reactivation)."""
    names = ", ".join(item["name"] for item in stopped)
    if action == "suspend":
        return f"{name} is suspended. " + (
            f"Stopped its instances: {names}." if names else "It had no running instances."
        )
    if action == "reactivate":
        return f"{name} is reactivated. " + (
            f"Stopped by the suspension, and still stopped until the customer starts them: {names}."
            if names
            else "The suspension stopped no instances."
        )
    return f"{name} is closed."


def _expiry(raw: str) -> datetime | None:
    """An expiry day as UTC midnight at its start, like token expiries; it must lie ahead."""
    day = parse_day(raw, "expires_at")
    if day is None:
        return None
    moment = day_start(day)
    if moment <= timezone.now():
        raise InvalidInput(
            "expires_at: must be in the future.", fields={"expires_at": ["Must be in the future."]}
        )
    return moment


@staff_page(methods=("POST",))
def tenant_credit(request: HttpRequest, staff_tenant_slug: str) -> HttpResponse:
    row = _row(staff_tenant_slug)
    post = request.POST
    form = {k: post.get(k, "").strip() for k in ("kind", "amount", "expires_at", "reason")}
    try:
        if not form["reason"]:
            raise InvalidInput("A note is required.", fields={"reason": ["This field is required."]})
        grant = billing_services.credit_grant_create(
            tenant=row.tenant,
            kind=form["kind"],
            amount=form["amount"],
            reason=form["reason"],
            expires_at=_expiry(form["expires_at"]),
            actor=request.user,
        )
    except DomainError as exc:
        return _detail(
            request, row, status=exc.status_code, credit_form=form, **form_error(exc), form_name="credit"
        )
    messages.success(request, f"Granted {grant.amount} of {grant.kind} credit to {row.tenant.name}.")
    return redirect("console:staff_tenant", staff_tenant_slug=row.tenant.slug)


@staff_page(methods=("POST",))
def tenant_quota(request: HttpRequest, staff_tenant_slug: str) -> HttpResponse:
    row = _row(staff_tenant_slug)
    limits = {name: request.POST.get(name, "") for name in QUOTA_LABELS}
    note = request.POST.get("note", "").strip()[:500]
    try:
        quota_services.quota_set(actor=request.user, tenant=row.tenant, limits=limits, note=note)  # type: ignore[arg-type]
    except DomainError as exc:
        quota_form = {
            name: {"label": label, "value": limits[name], "errors": (exc.fields or {}).get(name, [])}
            for name, label in QUOTA_LABELS.items()
        }
        return _detail(
            request,
            row,
            status=exc.status_code,
            quota_form=quota_form,
            quota_note=note,
            form_name="quota",
            **form_error(exc),
        )
    messages.success(request, f"Saved the quota limits of {row.tenant.name}.")
    return redirect("console:staff_tenant", staff_tenant_slug=row.tenant.slug)
