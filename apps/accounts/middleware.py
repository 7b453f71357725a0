"""The one place two-factor authentication is enforced, by rule rather than by a list of URLs.

A signed-in session that is not OTP-verified reaches nothing when its user is staff (two-factor is mandatory
for them) or has a confirmed authenticator (a session signed in before the user turned two-factor on, or one
made without the code step). Pages redirect to the set-up page (staff without a device yet) or to the code
page; the JSON API answers 403 with the code `two_factor_required`. Requests with a Bearer token are left to
token authentication: tokens belong to customers, and staff use the API through their console session. Both
read the header with the same parser (bearer.py), so a header the middleware leaves alone can only ever
authenticate as a token, never fall back to the session.

Views that must stay reachable (log in and out, the code and set-up pages) carry `two_factor_exempt`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from apps.accounts import bearer, two_factor
from apps.core.errors import error_body

F = TypeVar("F", bound=Callable[..., Any])
API_PREFIX = "/api/"


def two_factor_exempt(view: F) -> F:
    """Mark a view an unverified session may still use (the steps that lead to verification)."""
    view.two_factor_exempt = True  # type: ignore[attr-defined]
    return view


def _next_query(request: HttpRequest) -> str:
    if request.method != "GET":
        return ""
    return "?" + urlencode({"next": request.get_full_path()})


class TwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        user: Any = request.user
        match = request.resolver_match
        if match is not None and match.view_name == "admin:login" and not user.is_staff:
            # One log-in for everybody: ours has the rate limit and the code step, the admin's neither. A
            # signed-in customer gets no password form for staff accounts at all.
            if user.is_authenticated:
                raise Http404
            next_url = request.GET.get("next")
            return redirect(reverse("login") + ("?" + urlencode({"next": next_url}) if next_url else ""))
        if getattr(view_func, "two_factor_exempt", False):
            return None
        if not user.is_authenticated or user.is_verified():
            return None
        is_api = request.path.startswith(API_PREFIX)
        if is_api and bearer.parse(request.headers.get("Authorization", "")) is not None:
            return None  # token authentication takes it, and refuses it outright if the token is bad
        has_device = two_factor.has_confirmed_device(user)
        if not (user.is_staff or has_device):
            return None
        if is_api:
            body = error_body("two_factor_required", two_factor.SESSION_NOT_VERIFIED)
            return JsonResponse(body, status=403)
        target = "two_factor_verify" if has_device else "two_factor_setup"
        return redirect(reverse(target) + _next_query(request))
