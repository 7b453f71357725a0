"""API tokens: the list, creating one (its secret shown once) and revoking one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from apps.accounts import scopes as scope_defs
from apps.accounts import services as account_services
from apps.accounts.api.serializers import ApiTokenCreateSerializer
from apps.console.views.page_helpers import day_start, form_error, parse_day, validated
from apps.console.views.tenant import TenantPage, tenant_page
from apps.core.errors import DomainError
from apps.tenants import access
from apps.tenants import selectors as account_selectors
from apps.tenants import tokens as token_services
from apps.tenants.roles import Perm, grantable_scopes


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _token_form(page: TenantPage, **extra: Any) -> dict[str, Any]:
    grantable = grantable_scopes(page.membership.role)
    tokens = account_selectors.tokens_visible_to(membership=page.membership).order_by("-created_at")
    scope_choices = [
        {"value": s, "description": scope_defs.SCOPE_DESCRIPTIONS[s]}
        for s in scope_defs.ALL_SCOPES
        if s in grantable
    ]
    defaults = dict(
        tokens=tokens,
        scope_choices=scope_choices,
        show_owner=page.can(Perm.TOKENS_MANAGE),
        now=timezone.now(),
        form={"name": "", "scopes": [], "expires_at": ""},
    )
    return page.context(**{**defaults, **extra})


@tenant_page(Perm.TOKENS_OWN, methods=("GET", "POST"))
def tokens(page: TenantPage) -> HttpResponse:
    request = page.request
    if request.method == "POST":
        form: dict[str, Any] = {
            "name": request.POST.get("name", "").strip(),
            "scopes": request.POST.getlist("scopes"),
            "expires_at": request.POST.get("expires_at", ""),
        }
        try:
            page.require_status()
            expires_on = parse_day(form["expires_at"], "expires_at")
            data = validated(ApiTokenCreateSerializer, {"name": form["name"], "scopes": form["scopes"]})
            token, secret = token_services.token_create(
                user=page.user,
                membership=page.membership,
                name=data["name"],
                scopes=data["scopes"],
                expires_at=day_start(expires_on) if expires_on else None,
            )
        except DomainError as exc:
            context = _token_form(page, **form_error(exc))
            context["form"] = form
            return render(request, "console/account/tokens.html", context, status=exc.status_code)
        # The only response that ever carries the secret: not cached, not stored, not in a redirect.
        return _no_store(
            render(request, "console/account/token_created.html", page.context(token=token, secret=secret))
        )
    return render(request, "console/account/tokens.html", _token_form(page))


@tenant_page(Perm.TOKENS_OWN, methods=("GET", "POST"))
def token_revoke(page: TenantPage, token_id: Any) -> HttpResponse:
    token = account_selectors.tokens_visible_to(membership=page.membership).filter(pk=token_id).first()
    if token is None:
        raise Http404("Not found.")
    if page.request.method == "POST":
        try:
            page.require_status(cleanup=True)
            if token.user_id != page.user.pk:
                access.check_permission(membership=page.membership, perm=Perm.TOKENS_MANAGE)
            account_services.token_revoke(actor=page.user, token=token)
        except DomainError as exc:
            context = page.context(token=token, **form_error(exc))
            return render(page.request, "console/account/token_revoke.html", context, status=exc.status_code)
        messages.success(page.request, f"Revoked the token {token.name} ({token.prefix}…).")
        return redirect("console:tokens", tenant_slug=page.tenant.slug)
    return render(page.request, "console/account/token_revoke.html", page.context(token=token))
