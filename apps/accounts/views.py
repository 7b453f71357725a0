"""Sign-up, email verification and log-in pages. Password reset uses Django's own views."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import services
from apps.accounts.forms import SignupForm
from apps.core.errors import DomainError


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(**form.cleaned_data)
        except DomainError as exc:
            for field, errors in exc.fields.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.info(request, "Welcome! We sent you a link to verify your email address.")
            return redirect("console:home")
    return render(request, "accounts/signup.html", {"form": form}, status=400 if form.errors else 200)


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
    if not request.user.email_verified:  # type: ignore[union-attr]
        services.send_verification_email(request.user)  # type: ignore[arg-type]
    messages.info(request, "We sent a new verification link.")
    return redirect("console:home")
