"""Two-factor pages: the code step of log-in, set-up with a QR code, backup codes, and turning it off.

Log-in with two-factor on happens in two steps. The password step (views.LoginView) does not log the user in:
it parks who passed it in the session (`PENDING_KEY`, for a few minutes), and only a correct code here logs
the session in and marks it verified (django_otp.login). Wrong codes count against the same per-address and
per-IP limits as wrong passwords (login_throttle).
"""

from __future__ import annotations

import time
from typing import Any

import segno
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from apps.accounts import login_throttle, two_factor
from apps.accounts.form_errors import add_domain_error
from apps.accounts.middleware import two_factor_exempt
from apps.accounts.models import User
from apps.accounts.two_factor_forms import CodeForm, ConfirmDeviceForm, DisableForm
from apps.core.errors import DomainError
from apps.core.middleware import client_ip

PENDING_KEY = "two_factor_pending"
PENDING_MAX_AGE_SECONDS = 600
TOO_MANY_FAILURES = "Too many failed attempts. Wait a few minutes and try again."
DEVICE_BACK_OFF = "Too many wrong codes in a row. Wait a few seconds, then enter the newest code."


def _safe(request: HttpRequest, candidate: str) -> str:
    allowed = url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return candidate if candidate and allowed else ""


def _next(request: HttpRequest) -> str:
    return _safe(request, request.POST.get("next") or request.GET.get("next") or "")


def start_pending_login(request: HttpRequest, user: User, next_url: str) -> HttpResponse:
    """After a correct password for a user with two-factor on: remember them for the code step only."""
    request.session[PENDING_KEY] = {
        "user_id": str(user.pk),
        "backend": getattr(user, "backend", "django.contrib.auth.backends.ModelBackend"),
        "since": int(time.time()),
        "next": _safe(request, next_url),
    }
    return redirect("two_factor_verify")


def _pending_user(request: HttpRequest) -> tuple[User | None, dict[str, Any]]:
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict) or not pending.get("user_id"):
        return None, {}
    if time.time() - pending.get("since", 0) > PENDING_MAX_AGE_SECONDS:
        del request.session[PENDING_KEY]
        return None, {}
    return User.objects.filter(pk=str(pending["user_id"]), is_active=True).first(), pending


def _code_refusal(user: User, code: str, request: HttpRequest) -> tuple[str, int] | None:
    if login_throttle.is_blocked(user.email, client_ip(request)):
        return TOO_MANY_FAILURES, 429
    if two_factor.code_throttled(user, code):
        return DEVICE_BACK_OFF, 429
    return None


@two_factor_exempt
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The code step: for a pending log-in, or for a signed-in session that still needs its second factor."""
    user: Any = request.user
    pending: dict[str, Any] = {}
    if not user.is_authenticated:
        user, pending = _pending_user(request)
        if user is None:
            messages.info(request, "Log in first.")
            return redirect("login")
    elif user.is_verified():
        return redirect(_next(request) or resolve_url("console:home"))
    elif not two_factor.has_confirmed_device(user):
        # Nothing to check a code against: staff set up their first device, anyone else needs no code.
        if user.is_staff:
            return redirect("two_factor_setup")
        return redirect(_next(request) or resolve_url("console:home"))
    next_url = pending.get("next") or _next(request)
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        refusal = _code_refusal(user, code, request)
        device = None if refusal else two_factor.two_factor_verify(user=user, code=code)
        if refusal:
            form.add_error(None, refusal[0])
            status = refusal[1]
        elif device is None:
            login_throttle.record_failure(user.email, client_ip(request))
            form.add_error("code", "That code is not correct, or it was already used.")
            status = 400
        else:
            login_throttle.clear(user.email)
            if pending:
                del request.session[PENDING_KEY]
                auth_login(request, user, backend=pending["backend"])
            otp_login(request, device)
            return redirect(next_url or resolve_url("console:home"))
    elif form.errors:
        status = 400
    return render(request, "accounts/two_factor_verify.html", {"form": form, "next": next_url}, status=status)


def _qr_svg(device: Any) -> SafeString:
    qr = segno.make(device.config_url, error="m")
    svg = qr.svg_inline(scale=4, border=4, light="#fff", title="QR code for your authenticator app")
    svg = svg.replace("<svg ", '<svg role="img" ', 1)  # an image named by its <title>
    return mark_safe(svg)  # noqa: S308 -- segno's own markup; the only variable part is encoded in the picture


def _backup_codes_page(
    request: HttpRequest, codes: list[str], *, enabled_now: bool, tokens_revoked: bool = False
) -> HttpResponse:
    response = render(
        request,
        "accounts/two_factor_backup_codes.html",
        {
            "codes": [two_factor.format_backup_code(code) for code in codes],
            "enabled_now": enabled_now,
            "tokens_revoked": tokens_revoked,
            "next": _next(request),
        },
    )
    response["Cache-Control"] = "no-store"  # shown once: not kept by the browser either
    return response


@two_factor_exempt
@login_required
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    """Set up (or replace) the authenticator: scan the QR code or type the key, then confirm with a code."""
    user: Any = request.user
    if not user.is_verified() and two_factor.has_confirmed_device(user):
        # Only a session that passed its current factor may replace it.
        return redirect(resolve_url("two_factor_verify") + "?" + urlencode({"next": request.path}))
    form = ConfirmDeviceForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        revoke_tokens = form.cleaned_data["revoke_tokens"]
        if two_factor.pending_throttled(user):
            form.add_error(None, DEVICE_BACK_OFF)
            status = 429
        else:
            try:
                device, codes = two_factor.two_factor_confirm(
                    user=user, code=code, revoke_tokens=revoke_tokens
                )
            except DomainError as exc:
                add_domain_error(form, exc)
                status = 400
            else:
                update_session_auth_hash(request, user)  # the other sessions ended; this one goes on
                otp_login(request, device)
                return _backup_codes_page(request, codes, enabled_now=True, tokens_revoked=revoke_tokens)
    elif form.errors:
        status = 400
    device = two_factor.pending_device(user) or two_factor.two_factor_setup_start(user=user)
    context = {
        "form": form,
        "qr_svg": _qr_svg(device),
        "manual_key": two_factor.manual_key(device),
        "replacing": two_factor.has_confirmed_device(user),
        "next": _next(request),
    }
    response = render(request, "accounts/two_factor_setup.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the page carries the secret
    return response


@login_required
@require_http_methods(["GET"])
def status(request: HttpRequest) -> HttpResponse:
    return _status_page(request, DisableForm())


def _status_page(request: HttpRequest, form: DisableForm, status_code: int = 200) -> HttpResponse:
    user: Any = request.user
    device = two_factor.confirmed_device(user)
    context = {
        "enabled": device is not None,
        "device": device,
        "backup_codes_left": two_factor.backup_codes_left(user) if device else 0,
        "disable_form": form,
    }
    return render(request, "accounts/two_factor.html", context, status=status_code)


@login_required
@require_POST
def backup_codes(request: HttpRequest) -> HttpResponse:
    try:
        codes = two_factor.two_factor_backup_codes_regenerate(user=request.user)  # type: ignore[arg-type]
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("two_factor")
    return _backup_codes_page(request, codes, enabled_now=False)


@login_required
@require_POST
def disable(request: HttpRequest) -> HttpResponse:
    form = DisableForm(request.POST)
    if not form.is_valid():
        return _status_page(request, form, 400)
    try:
        two_factor.two_factor_disable(user=request.user, **form.cleaned_data)  # type: ignore[arg-type]
    except DomainError as exc:
        add_domain_error(form, exc)
        return _status_page(request, form, exc.status_code)
    messages.success(request, "Two-factor authentication is off.")
    return redirect("two_factor")
