"""Pages outside any tenant: the tenant list, creating a tenant, and accepting an invitation."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from apps.console.build_banner import POLL_TRIGGER, current_banner
from apps.console.views.page_helpers import validated
from apps.core.errors import DomainError
from apps.tenants import selectors, services
from apps.tenants.api.serializers import TenantCreateSerializer


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = selectors.memberships_for_user(user=request.user)  # type: ignore[arg-type]
    return render(request, "console/home.html", {"memberships": memberships})


@login_required
@require_GET
def build_status(request: HttpRequest) -> HttpResponse:
    """The bring-up banner alone, for HTMX polling; empty (the banner goes away) once everything is up."""
    banner = current_banner()
    if banner is None:
        return HttpResponse("")
    context = {"build_banner": banner, "build_poll_trigger": POLL_TRIGGER, "user": request.user}
    return render(request, "console/_build_banner.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def tenant_new(request: HttpRequest) -> HttpResponse:
    """The name is checked by the API's TenantCreateSerializer and the tenant made by tenant_create, so the
    form refuses exactly what POST /api/v1/tenants refuses, with the message on the field."""
    form = {"name": request.POST.get("name", "")}
    if request.method == "POST":
        try:
            data = validated(TenantCreateSerializer, form)
            tenant = services.tenant_create(user=request.user, name=data["name"])  # type: ignore[arg-type]
        except DomainError as exc:
            context = {"form": form, "error": exc.message, "field_errors": exc.fields}
            return render(request, "console/tenant_new.html", context, status=exc.status_code)
        messages.success(request, f"Created {tenant.name}. You are its owner.")
        return redirect("console:home")
    return render(request, "console/tenant_new.html", {"form": form, "field_errors": {}})


@login_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token") or request.POST.get("token", "")
    if request.method == "POST":
        try:
            membership = services.invitation_accept(user=request.user, secret=token)  # type: ignore[arg-type]
        except DomainError as exc:
            return render(
                request,
                "console/invitation_accept.html",
                {"token": token, "error": exc.message},
                status=exc.status_code,
            )
        messages.success(request, f"You joined {membership.tenant.name} as {membership.role}.")
        return redirect("console:home")
    return render(request, "console/invitation_accept.html", {"token": token})
