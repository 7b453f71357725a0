"""Sign-up, email verification, log-in, log-out and password reset pages, driven like a browser would."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils.http import urlsafe_base64_encode

from apps.accounts import services
from apps.accounts.models import User
from apps.audit.models import AuditEvent
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "violet-lantern-harbour-42"
LINK_RE = re.compile(r"https?://\S+")


def _link(body: str) -> str:
    """The first URL in an email body, as a path the test client can request."""
    match = LINK_RE.search(body)
    assert match, body
    return re.sub(r"^https?://[^/]+", "", match.group(0))


def _signup(client: Client, capture: Any, **overrides: str) -> Any:
    data = {"email": "ada@example.com", "full_name": "Ada Lovelace", "password": STRONG_PASSWORD, **overrides}
    with capture(execute=True):
        return client.post(reverse("signup"), data)


# --- sign-up -------------------------------------------------------------------------------------------


def test_signup_creates_the_user_logs_in_and_mails_a_verification_link(
    client: Client, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    response = _signup(client, django_capture_on_commit_callbacks, email="Ada@Example.com")

    assert response.status_code == 302
    assert response.url == reverse("console:home")
    user = User.objects.get(email="ada@example.com")
    assert user.full_name == "Ada Lovelace"
    assert user.check_password(STRONG_PASSWORD)
    assert user.email_verified_at is None
    assert client.session["_auth_user_id"] == str(user.pk)
    assert AuditEvent.objects.filter(action="user.signup", actor_user=user, via="console").exists()

    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ada@example.com"]
    assert reverse("verify_email") + "?token=" in mail.body


def test_signup_page_renders(client: Client) -> None:
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    assert b'name="email"' in response.content
    assert b'name="password"' in response.content


@pytest.mark.parametrize("weak", ["password123", "1234567890", "ada@example.com"])
def test_signup_with_a_weak_password_is_a_form_error(
    client: Client, mailoutbox: list, django_capture_on_commit_callbacks: Any, weak: str
) -> None:
    response = _signup(client, django_capture_on_commit_callbacks, password=weak)

    assert response.status_code == 400
    assert response.context["form"].errors["password"]
    assert not User.objects.filter(email="ada@example.com").exists()
    assert "_auth_user_id" not in client.session
    assert mailoutbox == []


def test_signup_with_a_short_password_is_a_form_error(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    response = _signup(client, django_capture_on_commit_callbacks, password="Xy7#q")
    assert response.status_code == 400
    assert "password" in response.context["form"].errors


def test_signup_with_a_registered_email_is_a_form_error(
    client: Client, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    existing = UserFactory(email="ada@example.com")

    response = _signup(client, django_capture_on_commit_callbacks, email="ADA@example.com")

    assert response.status_code == 400
    assert response.context["form"].errors["email"] == ["Already registered."]
    assert User.objects.filter(email__iexact="ada@example.com").count() == 1
    assert client.session.get("_auth_user_id") is None
    assert existing.check_password(PASSWORD)
    assert mailoutbox == []


def test_signup_with_an_invalid_email_is_a_form_error(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    response = _signup(client, django_capture_on_commit_callbacks, email="not-an-email")
    assert response.status_code == 400
    assert "email" in response.context["form"].errors
    assert not User.objects.exists()


def test_signup_follows_a_local_next_url_but_not_a_foreign_one(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    local = reverse("console:invitation_accept") + "?token=abc"
    response = _signup(client, django_capture_on_commit_callbacks, next=local)
    assert response.status_code == 302
    assert response.url == local

    other = Client()
    response = _signup(
        other, django_capture_on_commit_callbacks, email="eve@example.com", next="https://evil.example/"
    )
    assert response.status_code == 302
    assert response.url == reverse("console:home")


# --- email verification --------------------------------------------------------------------------------


def test_the_mailed_link_verifies_the_address_and_audits_it(
    client: Client, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    _signup(client, django_capture_on_commit_callbacks)
    link = _link(mailoutbox[0].body)

    response = client.get(link)

    assert response.status_code == 302
    assert response.url == reverse("console:home")
    user = User.objects.get(email="ada@example.com")
    assert user.email_verified_at is not None
    event = AuditEvent.objects.get(action="user.verify_email")
    assert event.actor_user == user
    assert event.target_id == str(user.pk)

    # Following the link again is harmless and does not audit twice.
    assert client.get(link).status_code == 302
    assert AuditEvent.objects.filter(action="user.verify_email").count() == 1


def test_the_link_works_without_a_session_and_leads_to_the_login_page(client: Client) -> None:
    user = UserFactory(email_verified_at=None)
    token = services.email_verification_token(user)

    response = client.get(reverse("verify_email"), {"token": token})

    assert response.status_code == 302
    assert response.url == reverse("login")
    user.refresh_from_db()
    assert user.email_verified


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), lambda t: "x" + t]
)
def test_a_tampered_link_is_refused(client: Client, mangle: Any) -> None:
    user = UserFactory(email_verified_at=None)
    token = mangle(services.email_verification_token(user))

    response = client.get(reverse("verify_email"), {"token": token})

    assert response.status_code == 400
    assert b"invalid" in response.content
    user.refresh_from_db()
    assert user.email_verified_at is None
    assert not AuditEvent.objects.filter(action="user.verify_email").exists()


def test_a_missing_token_is_refused(client: Client) -> None:
    assert client.get(reverse("verify_email")).status_code == 400


def test_a_token_signed_for_another_purpose_is_refused(client: Client) -> None:
    user = UserFactory(email_verified_at=None)
    token = signing.dumps({"uid": user.pk, "email": user.email}, salt="something-else")
    assert client.get(reverse("verify_email"), {"token": token}).status_code == 400
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_a_link_for_a_changed_address_is_refused(client: Client) -> None:
    user = UserFactory(email_verified_at=None, email="old@example.com")
    token = services.email_verification_token(user)
    User.objects.filter(pk=user.pk).update(email="new@example.com")

    assert client.get(reverse("verify_email"), {"token": token}).status_code == 400
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_an_expired_link_is_refused(client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    user = UserFactory(email_verified_at=None)
    too_old = int(time.time()) - (settings.EMAIL_VERIFICATION_TTL_HOURS * 3600 + 60)
    with monkeypatch.context() as patch:
        # Sign as if the link had been mailed a minute past its lifetime ago.
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(too_old))
        token = services.email_verification_token(user)

    response = client.get(reverse("verify_email"), {"token": token})

    assert response.status_code == 400
    assert b"expired" in response.content
    user.refresh_from_db()
    assert user.email_verified_at is None


def test_a_link_just_inside_its_lifetime_still_works(
    client: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = UserFactory(email_verified_at=None)
    recent = int(time.time()) - (settings.EMAIL_VERIFICATION_TTL_HOURS * 3600 - 600)
    with monkeypatch.context() as patch:
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(recent))
        token = services.email_verification_token(user)

    assert client.get(reverse("verify_email"), {"token": token}).status_code == 302
    user.refresh_from_db()
    assert user.email_verified


def test_resend_mails_a_fresh_link_to_an_unverified_user(client: Client, mailoutbox: list) -> None:
    user = UserFactory(email_verified_at=None)
    client.force_login(user)

    response = client.post(reverse("resend_verification"))

    assert response.status_code == 302
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [user.email]
    assert client.get(_link(mailoutbox[0].body)).status_code == 302
    user.refresh_from_db()
    assert user.email_verified


def test_resend_sends_nothing_to_a_verified_user(client: Client, mailoutbox: list) -> None:
    client.force_login(UserFactory())
    assert client.post(reverse("resend_verification")).status_code == 302
    assert mailoutbox == []


def test_resend_needs_a_post_and_a_session(client: Client) -> None:
    response = client.post(reverse("resend_verification"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    client.force_login(UserFactory(email_verified_at=None))
    assert client.get(reverse("resend_verification")).status_code == 405


# --- log in and log out --------------------------------------------------------------------------------


def test_login_with_email_and_password(client: Client) -> None:
    user = UserFactory(email="grace@example.com")

    response = client.post(reverse("login"), {"username": "grace@example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == reverse("console:home")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_ignores_the_case_of_the_email(client: Client) -> None:
    user = UserFactory(email="grace@example.com")
    response = client.post(reverse("login"), {"username": "Grace@Example.COM", "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_follows_a_local_next_url(client: Client) -> None:
    UserFactory(email="grace@example.com")
    target = reverse("console:tenant_new")
    response = client.post(
        reverse("login"), {"username": "grace@example.com", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response.url == target


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "grace@example.com", "password": "wrong-password-123"},
        {"username": "nobody@example.com", "password": PASSWORD},
        {"username": "", "password": ""},
    ],
)
def test_login_with_bad_credentials_shows_an_error(client: Client, credentials: dict[str, str]) -> None:
    UserFactory(email="grace@example.com")

    response = client.post(reverse("login"), credentials)

    assert response.status_code == 400
    assert response.context["form"].errors
    assert "_auth_user_id" not in client.session


def test_the_login_error_names_email_and_password(client: Client) -> None:
    UserFactory(email="grace@example.com")
    response = client.post(reverse("login"), {"username": "grace@example.com", "password": "nope-nope-nope"})
    assert b"The email address or the password is not correct." in response.content


def test_an_inactive_user_cannot_log_in(client: Client) -> None:
    UserFactory(email="grace@example.com", is_active=False)
    response = client.post(reverse("login"), {"username": "grace@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post(client: Client) -> None:
    client.force_login(UserFactory())

    assert client.get(reverse("logout")).status_code == 405
    assert "_auth_user_id" in client.session

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response.url == reverse("login")
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("console:home")).status_code == 302


def test_logout_needs_the_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory())
    assert client.post(reverse("logout")).status_code == 403
    assert "_auth_user_id" in client.session


def test_login_needs_the_csrf_token() -> None:
    UserFactory(email="grace@example.com")
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "grace@example.com", "password": PASSWORD})
    assert response.status_code == 403


# --- password reset ------------------------------------------------------------------------------------


def test_password_reset_full_flow(client: Client, mailoutbox: list) -> None:
    user = UserFactory(email="grace@example.com")

    response = client.post(reverse("password_reset"), {"email": "Grace@example.com"})
    assert response.status_code == 302
    assert response.url == reverse("password_reset_done")
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["grace@example.com"]

    # The link redirects to a URL without the token, where the new password is chosen.
    response = client.get(_link(mailoutbox[0].body))
    assert response.status_code == 302
    form_url = response.url
    response = client.get(form_url)
    assert response.status_code == 200
    assert response.context["validlink"] is True

    new_password = "quiet-meadow-lighthouse-7"
    response = client.post(form_url, {"new_password1": new_password, "new_password2": new_password})
    assert response.status_code == 302
    assert response.url == reverse("password_reset_complete")
    event = AuditEvent.objects.get(action="user.reset_password")
    assert event.actor_user == user
    assert event.via == "console"

    fresh = Client()
    old = fresh.post(reverse("login"), {"username": "grace@example.com", "password": PASSWORD})
    assert old.status_code == 400
    new = fresh.post(reverse("login"), {"username": "grace@example.com", "password": new_password})
    assert new.status_code == 302
    assert fresh.session["_auth_user_id"] == str(user.pk)

    # The link is single-use.
    response = client.get(_link(mailoutbox[0].body), follow=True)
    assert response.context["validlink"] is False


def test_password_reset_refuses_a_weak_new_password(client: Client, mailoutbox: list) -> None:
    user = UserFactory(email="grace@example.com")
    client.post(reverse("password_reset"), {"email": "grace@example.com"})
    form_url = client.get(_link(mailoutbox[0].body)).url

    response = client.post(form_url, {"new_password1": "password123", "new_password2": "password123"})

    assert response.status_code == 200
    assert response.context["form"].errors["new_password2"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert not AuditEvent.objects.filter(action="user.reset_password").exists()


def test_password_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(
    client: Client, mailoutbox: list
) -> None:
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response.url == reverse("password_reset_done")
    assert mailoutbox == []


def test_a_forged_reset_link_is_refused(client: Client) -> None:
    user = UserFactory(email="grace@example.com")
    uid = urlsafe_base64_encode(str(user.pk).encode())
    url = reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": "abc-0123456789abcdef"})

    response = client.get(url, follow=True)

    assert response.context["validlink"] is False
    assert b"invalid" in response.content
