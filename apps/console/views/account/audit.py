"""The audit log: the tenant's events, filtered by action prefix, actor and UTC days, fifty a page."""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpResponse
from django.shortcuts import render

from apps.audit.selectors import audit_events_of
from apps.console.views.page_helpers import day_start, form_error, paginate, parse_day
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError, InvalidInput
from apps.tenants.roles import Perm

AUDIT_PAGE_SIZE = 50


@tenant_page(Perm.AUDIT_READ)
def audit(page: TenantPage) -> HttpResponse:
    get = page.request.GET
    filters = {k: get.get(k, "").strip() for k in ("action", "actor", "since", "until")}
    events = audit_events_of(tenant=page.tenant).order_by("-created_at", "-id")
    try:
        since = parse_day(filters["since"], "since")
        until = parse_day(filters["until"], "until")
        if since and until and until < since:
            raise InvalidInput(
                "until: must not be before since.", fields={"until": ["Must not be before since."]}
            )
    except DomainError as exc:
        context = page.context(filters=filters, page_obj=None, querystring="", **form_error(exc))
        return render(page.request, "console/account/audit.html", context, status=exc.status_code)
    if filters["action"]:
        events = events.filter(action__startswith=filters["action"].rstrip("*"))
    if filters["actor"]:
        events = events.filter(actor_label__iexact=filters["actor"])
    if since:
        events = events.filter(created_at__gte=day_start(since))
    if until:  # inclusive: the whole day
        events = events.filter(created_at__lt=day_start(until + timedelta(days=1)))
    page_obj, querystring = paginate(page.request, events, AUDIT_PAGE_SIZE)
    context = page.context(filters=filters, page_obj=page_obj, querystring=querystring)
    return render(page.request, "console/account/audit.html", context)
