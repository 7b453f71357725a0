"""Quotas: limits against usage, and asking staff for more."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render

from apps.catalog.models import GpuType, Region
from apps.console.views.page_helpers import form_error, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError
from apps.quotas import selectors as quota_selectors
from apps.quotas import services as quota_services
from apps.quotas.api.serializers import QuotaRequestCreateSerializer
from apps.quotas.models import QuotaResource
from apps.tenants.roles import Perm

_RESOURCE_LABELS = {
    "instances": "Instances",
    "gpus": "GPUs (all types)",
    "vcpu": "vCPU",
    "memory_gib": "Memory (GiB)",
    "volume_gib": "Volumes (GiB)",
    "object_storage_gib": "Object storage (GiB)",
}


def _with_percent(row: dict[str, Any]) -> dict[str, Any]:
    limit, used = row["limit"], row["used"]
    percent = min(100, round(used * 100 / limit)) if limit else (100 if used else 0)
    return {**row, "percent": percent, "over": limit == 0 or used >= limit}


def _quotas_context(page: TenantPage, **extra: Any) -> dict[str, Any]:
    overview = quota_selectors.quota_overview(tenant=page.tenant)
    limits = [
        {**_with_percent(r), "label": _RESOURCE_LABELS.get(r["resource"], r["resource"])}
        for r in overview["limits"]
    ]
    defaults = dict(
        limits=limits,
        gpu_rows=[_with_percent(r) for r in overview["gpu_types"]],
        requests=quota_selectors.quota_requests_of(tenant=page.tenant).order_by("-created_at"),
        resources=QuotaResource.choices,
        gpu_types=GpuType.objects.order_by("slug"),
        regions=Region.objects.order_by("slug"),
        form={"resource": "gpus", "gpu_type": "", "region": "", "amount": "", "reason": ""},
    )
    return page.context(can_request_quota=page.can(Perm.QUOTA_MANAGE), **{**defaults, **extra})


@tenant_page(Perm.TENANT_READ, methods=("GET", "POST"), post_perm=Perm.QUOTA_MANAGE)
def quotas(page: TenantPage) -> HttpResponse:
    if page.request.method == "POST":
        post = page.request.POST
        form = {k: post.get(k, "").strip() for k in ("resource", "gpu_type", "region", "amount", "reason")}
        try:
            page.require_status()
            data = validated(QuotaRequestCreateSerializer, {k: v for k, v in form.items() if v})
            created = quota_services.quota_request_create(actor=page.user, tenant=page.tenant, **data)
        except DomainError as exc:
            context = _quotas_context(page, **form_error(exc))
            context["form"] = form
            return render(page.request, "console/account/quotas.html", context, status=exc.status_code)
        messages.success(page.request, f"Asked for {created.amount} ({created.resource}); staff will decide.")
        return redirect("console:quotas", tenant_slug=page.tenant.slug)
    return render(page.request, "console/account/quotas.html", _quotas_context(page))
