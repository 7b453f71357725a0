"""The staff area under /staff/: plumbing, quota requests and instances across tenants.

Staff pages answer the plain 404 page to anyone who is not staff (signed out included), for every method, so
the area does not reveal that it exists. Tenants and their actions are in staff_tenants.py. Writes go through
the owning app's services, which audit them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts import two_factor
from apps.catalog.models import Region
from apps.console import staff_selectors
from apps.console.views.page_helpers import form_error, paginate
from apps.core.errors import DomainError, InvalidInput
from apps.instances.states import State
from apps.quotas import services as quota_services
from apps.quotas.models import QuotaRequest, QuotaRequestStatus

INSTANCES_PAGE_SIZE = 50
REQUESTS_PAGE_SIZE = 25


def is_staff_session(request: HttpRequest) -> bool:
    """A signed-in, active staff user whose session passed its second factor (fails closed without
    django-otp's `is_verified`)."""
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return two_factor.session_is_verified(user)


def staff_page(
    *, methods: tuple[str, ...] = ("GET",)
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        allowed = require_http_methods(list(methods))(view)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            # Checked before the method, so a non-staff POST or PUT is a 404 too, never a 405.
            if not is_staff_session(request):
                raise Http404("Not found.")
            return allowed(request, **kwargs)

        return wrapper

    return decorate


def choice(value: str, allowed: list[str], field: str) -> str:
    if value and value not in allowed:
        raise InvalidInput(f"{field}: not one of the choices.", fields={field: ["Not one of the choices."]})
    return value


# --- quota requests -------------------------------------------------------------------------------------


@staff_page()
def quota_requests(request: HttpRequest) -> HttpResponse:
    filters = {"status": request.GET.get("status", "").strip()}
    context: dict[str, Any] = {"filters": filters, "statuses": QuotaRequestStatus.choices}
    try:
        choice(filters["status"], QuotaRequestStatus.values, "status")
    except DomainError as exc:
        context.update(page_obj=None, **form_error(exc))
        return render(request, "console/staff/quota_requests.html", context, status=exc.status_code)
    page_obj, querystring = paginate(
        request, staff_selectors.quota_requests_for_staff(status=filters["status"]), REQUESTS_PAGE_SIZE
    )
    context.update(page_obj=page_obj, querystring=querystring)
    return render(request, "console/staff/quota_requests.html", context)


@staff_page(methods=("POST",))
def quota_request_decide(request: HttpRequest, quota_request_id: Any) -> HttpResponse:
    quota_request = QuotaRequest.objects.select_related("tenant").filter(pk=quota_request_id).first()
    if quota_request is None:
        raise Http404("Not found.")
    decision = request.POST.get("decision", "")
    note = request.POST.get("note", "").strip()[:1000]
    what = f"{quota_request.tenant.slug}: {quota_request.resource} to {quota_request.amount}"
    try:
        choice(decision, ["approve", "deny"], "decision")
        if not decision:
            raise InvalidInput("Approve or deny.", fields={"decision": ["This field is required."]})
        quota_services.quota_request_decide(
            actor=request.user,  # type: ignore[arg-type]
            request=quota_request,
            approve=decision == "approve",
            note=note,
        )
    except DomainError as exc:
        messages.error(request, f"{what}: {exc.message}")
    else:
        done = "Approved" if decision == "approve" else "Denied"
        messages.success(request, f"{done} the request of {what}.")
    return redirect("console:staff_quota_requests")


# --- instances ------------------------------------------------------------------------------------------


@staff_page()
def instances(request: HttpRequest) -> HttpResponse:
    get = request.GET
    filters = {k: get.get(k, "").strip() for k in ("state", "region", "tenant")}
    regions = list(Region.objects.order_by("slug"))
    context: dict[str, Any] = {"filters": filters, "states": [s.value for s in State], "regions": regions}
    try:
        choice(filters["state"], [*context["states"], "all"], "state")
        choice(filters["region"], [r.slug for r in regions], "region")
    except DomainError as exc:
        context.update(page_obj=None, **form_error(exc))
        return render(request, "console/staff/instances.html", context, status=exc.status_code)
    page_obj, querystring = paginate(
        request, staff_selectors.instances_for_staff(**filters), INSTANCES_PAGE_SIZE
    )
    context.update(page_obj=page_obj, querystring=querystring)
    return render(request, "console/staff/instances.html", context)
