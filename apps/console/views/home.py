"""Pages outside any tenant: the tenant list, creating a tenant, and accepting an invitation."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.core.errors import DomainError, InvalidInput
from apps.tenants import selectors, services


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = selectors.memberships_for_user(user=request.user)  # type: ignore[arg-type]
    return render(request, "console/home.html", {"memberships": memberships})


@login_required
@require_http_methods(["GET", "POST"])
def tenant_new(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    if request.method == "POST":
        try:
            if not name:
                raise InvalidInput("A name is required.", fields={"name": ["This field is required."]})
            if len(name) > 100:
                raise InvalidInput("The name is too long.", fields={"name": ["At most 100 characters."]})
            tenant = services.tenant_create(user=request.user, name=name)  # type: ignore[arg-type]
        except DomainError as exc:
            context = {"error": exc.message, "name": name}
            return render(request, "console/tenant_new.html", context, status=exc.status_code)
        messages.success(request, f"Created {tenant.name}. You are its owner.")
        return redirect("console:home")
    return render(request, "console/tenant_new.html", {"name": name})


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
