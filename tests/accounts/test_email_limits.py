"""Sign-up, password reset and verification resend each send an email, so each is limited per address and
per client IP like log-in (apps/accounts/address_limits.py): past the limit, 429 with Retry-After and a form
error that reads the same whether or not the address has an account.

Every test uses its own client IP and addresses, so counters left in the cache by other tests never meet
these (the test settings lift the limits for the rest of the suite)."""

from __future__ import annotations

import itertools
import re
import time
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "violet-lantern-harbour-42"
TOO_MANY = "Too many attempts for this address or from your network."
_ips = itertools.count(1)


@pytest.fixture
def limits(settings: Any) -> Any:
    settings.ACCOUNT_EMAIL_MAX_PER_ADDRESS = 2
    settings.ACCOUNT_EMAIL_MAX_PER_IP = 3
    settings.ACCOUNT_EMAIL_WINDOW_SECONDS = 600
    return settings


def _client() -> Client:
    """A browser at an address of its own (TEST-NET-2, one per test)."""
    return Client(REMOTE_ADDR=f"198.51.100.{next(_ips) % 250 + 1}")


def _address() -> str:
    return f"limit-{uuid.uuid4().hex[:12]}@example.com"


def _assert_limited(response: Any, window: int = 600) -> None:
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= window
    assert TOO_MANY in response.content.decode()


# --- sign-up -------------------------------------------------------------------------------------------


def _signup(client: Client, email: str, capture: Any) -> Any:
    with capture(execute=True):
        return client.post(reverse("signup"), {"email": email, "full_name": "", "password": STRONG_PASSWORD})


def test_signup_is_limited_per_address(
    limits: Any, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    email = _address()
    first = _signup(_client(), email, django_capture_on_commit_callbacks)
    again = _signup(_client(), email, django_capture_on_commit_callbacks)  # another IP, same address

    refused = _signup(_client(), email, django_capture_on_commit_callbacks)

    assert first.status_code == 302 and again.status_code == 400  # "already registered"
    _assert_limited(refused)
    assert "Already registered" not in refused.content.decode()  # nothing about the address
    assert len(mailoutbox) == 1


def test_signup_is_limited_per_ip(
    limits: Any, mailoutbox: list, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client()
    for _ in range(3):
        client.logout()
        assert _signup(client, _address(), django_capture_on_commit_callbacks).status_code == 302
    client.logout()
    email = _address()

    refused = _signup(client, email, django_capture_on_commit_callbacks)

    _assert_limited(refused)
    assert not User.objects.filter(email=email).exists()
    assert len(mailoutbox) == 3
    # Someone else, elsewhere, is not affected.
    assert _signup(_client(), _address(), django_capture_on_commit_callbacks).status_code == 302


def test_signup_form_errors_do_not_count(limits: Any) -> None:
    client = _client()
    for _ in range(5):
        bad = client.post(reverse("signup"), {"email": "not-an-address", "password": STRONG_PASSWORD})
        assert bad.status_code == 400
    assert (
        client.post(reverse("signup"), {"email": _address(), "password": STRONG_PASSWORD}).status_code == 302
    )


# --- password reset ------------------------------------------------------------------------------------


def _reset(client: Client, email: str) -> Any:
    return client.post(reverse("password_reset"), {"email": email})


def test_password_reset_is_limited_per_address_and_reads_the_same_for_unknown_addresses(
    limits: Any, mailoutbox: list
) -> None:
    known = UserFactory(email=_address()).email
    unknown = _address()
    answers = {}
    for email in (known, unknown):
        for _ in range(2):
            assert _reset(_client(), email).status_code == 302
        answers[email] = _reset(_client(), email)

    for response in answers.values():
        _assert_limited(response)
    assert _page(answers[known], known) == _page(answers[unknown], unknown)
    assert len(mailoutbox) == 2 and {m.to[0] for m in mailoutbox} == {known}


def _page(response: Any, email: str) -> str:
    """The page without what differs between any two responses: the address typed and the CSRF token."""
    html = response.content.decode().replace(email, "EMAIL")
    return re.sub(r'(csrfmiddlewaretoken" value="|"X-CSRFToken": ")[^"]+"', "CSRF", html)


def test_password_reset_is_limited_per_ip(limits: Any, mailoutbox: list) -> None:
    client = _client()
    users = [UserFactory(email=_address()) for _ in range(4)]
    for user in users[:3]:
        assert _reset(client, user.email).status_code == 302

    refused = _reset(client, users[3].email)

    _assert_limited(refused)
    assert users[3].email not in {m.to[0] for m in mailoutbox}
    assert _reset(_client(), users[3].email).status_code == 302


# --- verification resend -------------------------------------------------------------------------------


def test_resend_is_limited_per_address(limits: Any, mailoutbox: list) -> None:
    user = UserFactory(email=_address(), email_verified_at=None)
    for _ in range(2):
        client = _client()
        client.force_login(user)
        assert client.post(reverse("resend_verification")).status_code == 302
    client = _client()
    client.force_login(user)

    refused = client.post(reverse("resend_verification"))

    _assert_limited(refused)
    assert len(mailoutbox) == 2


def test_resend_is_limited_per_ip(limits: Any, mailoutbox: list) -> None:
    client = _client()
    users = [UserFactory(email=_address(), email_verified_at=None) for _ in range(4)]
    for user in users[:3]:
        client.force_login(user)
        assert client.post(reverse("resend_verification")).status_code == 302

    client.force_login(users[3])
    _assert_limited(client.post(reverse("resend_verification")))
    assert len(mailoutbox) == 3


def test_the_limit_ends_with_its_window(limits: Any, mailoutbox: list) -> None:
    limits.ACCOUNT_EMAIL_WINDOW_SECONDS = 2
    email = _address()
    for _ in range(2):
        assert _reset(_client(), email).status_code == 302
    refused = _reset(_client(), email)
    _assert_limited(refused, window=2)

    time.sleep(2.2)  # the counters expire with the window in Redis

    assert _reset(_client(), email).status_code == 302
