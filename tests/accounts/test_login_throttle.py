"""Password guessing is slowed: after too many failures an address is refused (429), even with the right
password, until the window passes; a success clears the count."""

import pytest
from django.core.cache import cache

from apps.accounts import login_throttle
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(settings):
    settings.LOGIN_MAX_FAILURES = 3
    person = UserFactory()
    yield person
    login_throttle.clear(person.email)
    cache.delete("login-fail:ip:127.0.0.1")


def _login(client, email, password):
    return client.post("/accounts/login/", {"username": email, "password": password})


def test_blocked_after_repeated_failures_even_with_the_right_password(client, user):
    for _ in range(3):
        assert _login(client, user.email, "wrong-password").status_code == 400
    blocked = _login(client, user.email, PASSWORD)
    assert blocked.status_code == 429
    assert b"Too many failed attempts" in blocked.content
    assert "_auth_user_id" not in client.session


def test_a_success_clears_the_count(client, user):
    for _ in range(2):
        _login(client, user.email, "wrong-password")
    assert _login(client, user.email, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert _login(client, user.email, "wrong-password").status_code == 400  # counting from zero again


def test_other_addresses_are_not_blocked(client, user):
    for _ in range(3):
        _login(client, user.email, "wrong-password")
    other = UserFactory()
    try:
        assert _login(client, other.email, PASSWORD).status_code == 302
    finally:
        login_throttle.clear(other.email)
