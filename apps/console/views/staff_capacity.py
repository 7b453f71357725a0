"""Staff: per-region capacity overview (GPUs total, used and free by type; nodes and their state).

Figures come from what the operator's capacity pass last wrote (catalog.RegionNode) and from the instances
that hold compute; apps/catalog/selectors.py `capacity_overview` explains each number."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.catalog.selectors import CAPACITY_STALE_AFTER, capacity_overview
from apps.console.views.staff import staff_page


@staff_page(methods=("GET", "HEAD"))
def staff_capacity(request: HttpRequest) -> HttpResponse:
    context = {
        "regions": capacity_overview(),
        "stale_after_minutes": int(CAPACITY_STALE_AFTER.total_seconds() // 60),
    }
    return render(request, "console/staff/capacity.html", context)
