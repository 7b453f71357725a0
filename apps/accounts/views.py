"""Sign-up, email verification and log-in pages. Password reset uses Django's own views."""

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import address_limits, login_throttle, services, two_factor
from apps.accounts.form_errors import add_domain_error
from apps.accounts.forms import AuditedSetPasswordForm, EmailAuthenticationForm, SignupForm
from apps.accounts.middleware import two_factor_exempt
from apps.accounts.two_factor_views import start_pending_login
from apps.core.errors import DomainError
from apps.core.middleware import client_ip


def _safe_next(request: HttpRequest) -> str:
    """The `next` URL of the request if it stays on this site, else an empty string."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return candidate if allowed else ""


@method_decorator(two_factor_exempt, name="dispatch")
class LoginView(auth_views.LoginView):
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        email = request.POST.get("username", "")
        if login_throttle.is_blocked(email, client_ip(request)):
            form = self.get_form()
            form.is_bound = True
            # Shown without checking the password: a blocked address learns nothing more.
            form._errors, form.cleaned_data = ErrorDict(), {}  # type: ignore[attr-defined]
            form.add_error(None, "Too many failed attempts. Wait a few minutes and try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if two_factor.has_confirmed_device(user):
            # Not logged in yet: the code step does that. The failure count stays until the code is right.
            return start_pending_login(self.request, user, self.get_redirect_url())
        login_throttle.clear(self.request.POST.get("username", ""))
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        login_throttle.record_failure(self.request.POST.get("username", ""), client_ip(self.request))
        response = super().form_invalid(form)
        response.status_code = 400
        return response


def _limited(request: HttpRequest, action: str, email: str) -> int | None:
    """Count one attempt at an action that sends an email; the seconds to wait instead if it is over its
    limit for this address or this client IP (address_limits)."""
    limit = address_limits.email_action_limit(action)
    ip = client_ip(request)
    wait = limit.retry_after(email, ip)
    if wait is None:
        limit.record(email, ip)
    return wait


def _too_many(wait: int) -> str:
    # The same words whether or not the address has an account.
    wait_for = address_limits.minutes(wait)
    return f"Too many attempts for this address or from your network. Try again in {wait_for}."


def _refused(response: HttpResponse, wait: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(wait)
    return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset request, limited per address and per IP: each request mails a link."""

    def form_valid(self, form: Any) -> HttpResponse:
        wait = _limited(self.request, "password-reset", form.cleaned_data["email"])
        if wait is not None:
            form.add_error(None, _too_many(wait))
            return _refused(self.form_invalid(form), wait)
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = AuditedSetPasswordForm


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request)
    form = SignupForm(request.POST or None)
    wait = None
    if request.method == "POST" and form.is_valid():
        wait = _limited(request, "signup", form.cleaned_data["email"])
        if wait is not None:
            form.add_error(None, _too_many(wait))
        else:
            user = _signup(form)
            if user is not None:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.info(request, "Welcome! We sent you a link to verify your email address.")
                return redirect(next_url or resolve_url("console:home"))
    response = render(
        request,
        "accounts/signup.html",
        {"form": form, "next": next_url},
        status=400 if form.errors else 200,
    )
    return _refused(response, wait) if wait is not None else response


def _signup(form: SignupForm) -> Any:
    """The new user, or None with the service's refusal added to the form."""
    try:
        return services.user_signup(**form.cleaned_data)
    except DomainError as exc:
        add_domain_error(form, exc)
        return None


@require_http_methods(["GET"])
def verify_email(request: HttpRequest) -> HttpResponse:
    try:
        services.user_verify_email(token=request.GET.get("token", ""))
    except DomainError as exc:
        return render(request, "accounts/verify_email.html", {"error": exc.message}, status=400)
    messages.success(request, "Your email address is verified.")
    return redirect("console:home" if request.user.is_authenticated else "login")


@login_required
@require_POST
def resend_verification(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    if user.email_verified:
        messages.info(request, "Your email address is already verified.")
        return redirect("console:home")
    wait = _limited(request, "verify-resend", user.email)
    if wait is not None:
        response = render(request, "accounts/verify_email.html", {"error": _too_many(wait)})
        return _refused(response, wait)
    services.send_verification_email(user)
    messages.info(request, "We sent a new verification link.")
    return redirect("console:home")
