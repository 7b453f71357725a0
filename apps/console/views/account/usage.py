"""Usage: the ledger's usage in a range of UTC days, grouped per instance type, instance, day or value of a
tag, optionally only what carries some tags (docs/billing.md "Tags"): the API's usage report, read through
the same selector after the API's own validation of the same parameters."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.http import HttpResponse
from django.utils import timezone

from apps.billing import selectors as billing_selectors
from apps.billing.api.serializers import UsageQuerySerializer
from apps.console.views.page_helpers import day_start, form_error, parse_day, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core import tags as core_tags
from apps.core.errors import DomainError
from apps.tenants.roles import Perm

GROUPS = [
    ("instance_type", "Instance type"),
    ("instance", "Instance"),
    ("day", "Day (UTC)"),
    ("tag", "Value of a tag"),
]


def _report(page: TenantPage, form: dict[str, str]) -> dict[str, Any]:
    now = timezone.now()
    first, last = parse_day(form["from"], "from"), parse_day(form["to"], "to")
    start = day_start(first) if first else billing_selectors.month_start(now)
    end = day_start(last + timedelta(days=1)) if last else now  # the last day is included
    group_by = (
        f"{billing_selectors.TAG_GROUP}{form['tag_key'].strip()}" if form["group"] == "tag" else form["group"]
    )
    query = validated(
        UsageQuerySerializer, {"from": start.isoformat(), "to": end.isoformat(), "group_by": group_by}
    )
    tags = core_tags.parse_lines(form["tags"])
    results = billing_selectors.usage_report(
        tenant=page.tenant, start=query["start"], end=query["end"], group_by=query["group_by"], tags=tags
    )
    return {
        "start": query["start"],
        "end": query["end"],
        "group_by": query["group_by"],
        "filter": core_tags.as_lines(tags).splitlines(),
        "results": results,
        "total": sum((row["amount"] for row in results), Decimal(0)),
    }


@tenant_page(Perm.BILLING_READ)
def usage(page: TenantPage) -> HttpResponse:
    params = page.request.GET
    form = {
        "from": params.get("from", ""),
        "to": params.get("to", ""),
        "group": params.get("group", "instance_type"),
        "tag_key": params.get("tag_key", ""),
        "tags": params.get("tags", ""),
    }
    context: dict[str, Any] = {"form": form, "groups": GROUPS, "field_errors": {}, "report": None}
    try:
        context["report"] = _report(page, form)
    except DomainError as exc:
        context.update(form_error(exc))
        return page.render("console/account/usage.html", context, status=exc.status_code)
    return page.render("console/account/usage.html", context)
