"""Plumbing for the tenant pages under /t/<tenant_slug>/, and the tenant dashboard.

`tenant_page` resolves the tenant with apps.tenants.access exactly as the API does: someone who is not a
member gets the plain 404 page (which names no tenant), a role without the permission a 403 page naming what
is missing. Views receive a `TenantPage` and render through it, so the layout always knows the tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods
from django_htmx.middleware import HtmxDetails

from apps.billing.selectors import wallet_of
from apps.catalog.models import GpuType
from apps.console import charts
from apps.core.errors import Forbidden, NotFound
from apps.instances import selectors as instance_selectors
from apps.instances.states import State
from apps.quotas.selectors import quota_overview
from apps.quotas.usage import usage_of
from apps.tenants import access
from apps.tenants.models import Membership, Tenant, TenantStatus
from apps.tenants.roles import Perm, role_allows


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's HtmxMiddleware leaves it: `request.htmx` is truthy for htmx's requests."""

    htmx: HtmxDetails


@dataclass
class TenantPage:
    request: HtmxHttpRequest
    membership: Membership

    @property
    def tenant(self) -> Tenant:
        return self.membership.tenant

    @property
    def user(self) -> Any:
        return self.request.user

    def can(self, perm: Perm) -> bool:
        return role_allows(self.membership.role, perm)

    def require(self, perm: Perm) -> None:
        access.check_permission(membership=self.membership, perm=perm)

    def require_status(self, *, cleanup: bool = False) -> None:
        """A suspended tenant only cleans up (stop, terminate, delete); a closed one only reads."""
        access.check_tenant_status(
            tenant=self.tenant,
            method="DELETE" if cleanup else "POST",
            allowed_when_suspended=frozenset({"DELETE"}),
        )

    def context(self, **extra: Any) -> dict[str, Any]:
        """What every tenant page (and the navigation in base.html) needs about the caller's role."""
        return {
            "tenant": self.tenant,
            "membership": self.membership,
            "can_write_instances": self.can(Perm.INSTANCES_WRITE),
            "can_read_instances": self.can(Perm.INSTANCES_READ),
            "can_read_billing": self.can(Perm.BILLING_READ),
            "can_read_audit": self.can(Perm.AUDIT_READ),
            "can_read_storage": self.can(Perm.STORAGE_READ),
            "can_write_storage": self.can(Perm.STORAGE_WRITE),
            **extra,
        }

    def render(self, template: str, context: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
        return render(self.request, template, self.context(**(context or {})), status=status)


def forbidden(request: HttpRequest, exc: Forbidden, membership: Membership | None = None) -> HttpResponse:
    context: dict[str, Any] = {"message": exc.message}
    if membership is not None:
        context.update(tenant=membership.tenant, membership=membership)
    return render(request, "console/forbidden.html", context, status=403)


def tenant_page(
    perm: Perm, *, methods: tuple[str, ...] = ("GET",), post_perm: Perm | None = None
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Resolve the tenant (404 for non-members), check `perm` and, for POST, `post_perm` (403 page)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @require_http_methods(list(methods))
        @functools.wraps(view)
        def wrapper(request: HtmxHttpRequest, tenant_slug: str, **kwargs: Any) -> HttpResponse:
            try:
                membership = access.access_membership(user=request.user, tenant_slug=tenant_slug)
            except NotFound as exc:
                raise Http404("Not found.") from exc
            try:
                access.check_permission(membership=membership, perm=perm)
                if request.method == "POST" and post_perm is not None:
                    access.check_permission(membership=membership, perm=post_perm)
                return view(TenantPage(request, membership), **kwargs)
            except NotFound as exc:
                raise Http404("Not found.") from exc
            except Forbidden as exc:
                return forbidden(request, exc, membership)

        return wrapper

    return decorate


# --- dashboard ------------------------------------------------------------------------------------------


def _gpu_rows(tenant: Tenant, overview: dict[str, Any]) -> list[dict[str, Any]]:
    """GPUs in use per GPU type against its limit: the type's own limit where staff set one (per region
    or overall), otherwise the tenant's GPU total, which every type shares."""
    usage = usage_of(tenant)
    total_limit = next(row["limit"] for row in overview["limits"] if row["resource"] == "gpus")
    used_by_type: dict[Any, int] = {}
    for (gpu_type_id, _region_id), n in usage.gpus_by_type_region.items():
        used_by_type[gpu_type_id] = used_by_type.get(gpu_type_id, 0) + n
    slugs = dict(GpuType.objects.filter(pk__in=used_by_type).values_list("pk", "slug"))
    rows = [
        {"gpu_type": row["gpu_type"], "region": row["region"], "used": row["used"], "limit": row["limit"]}
        for row in overview["gpu_types"]
    ]
    limited = {row["gpu_type"] for row in rows}
    for gpu_type_id, used in sorted(used_by_type.items(), key=lambda item: slugs.get(item[0], "")):
        slug = slugs.get(gpu_type_id, "?")
        if slug not in limited:
            rows.append(
                {"gpu_type": slug, "region": None, "used": used, "limit": total_limit, "shared": True}
            )
    return rows


SPEND_DAYS = 30


@tenant_page(Perm.TENANT_READ)
def dashboard(t: TenantPage) -> HttpResponse:
    tenant = t.tenant
    overview = quota_overview(tenant=tenant)
    context: dict[str, Any] = {
        "suspended": tenant.status != TenantStatus.ACTIVE,
        "limits": overview["limits"],
        "gpu_rows": _gpu_rows(tenant, overview),
    }
    if t.can(Perm.INSTANCES_READ):
        context["running"] = list(
            instance_selectors.instances_of(tenant=tenant).filter(state=State.RUNNING).order_by("name")
        )
        context["events"] = list(instance_selectors.recent_events_of(tenant=tenant, limit=10))
    context["gpu_chart"] = charts.quota_bars(context["gpu_rows"])
    if t.can(Perm.BILLING_READ):
        now = timezone.now()
        wallet = wallet_of(tenant, now)
        context["wallet"] = wallet
        days = charts.spend_by_day(tenant=tenant, start=charts.last_days(now, SPEND_DAYS), end=now)
        context["spend_chart"] = charts.bar_chart(days, short=lambda day: day[-2:])
        context["runway_chart"] = charts.runway_chart(
            balance=wallet.balance, burn_per_hour=wallet.burn_rate_per_hour, now=now
        )
    return t.render("console/dashboard.html", context)
