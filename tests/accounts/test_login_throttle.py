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


def test_clients_behind_a_trusted_proxy_have_their_own_ip_budget(client, settings):
    """With TRUSTED_PROXY_HOPS = 1 the IP budget is the client's (the proxy's X-Forwarded-For entry), not the
    proxy's, which every client shares; one client guessing does not lock out the others."""
    settings.TRUSTED_PROXY_HOPS = 1
    settings.LOGIN_MAX_FAILURES = 1  # per IP: 1 x IP_FACTOR failures, spread over accounts
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    guesser, neighbour = "203.0.113.7", "203.0.113.8"
    victims = [UserFactory() for _ in range(login_throttle.IP_FACTOR)]
    other = UserFactory()
    try:
        for victim in victims:
            client.post(
                "/accounts/login/",
                {"username": victim.email, "password": "wrong-password"},
                HTTP_X_FORWARDED_FOR=guesser,
                **proxy,
            )
        assert login_throttle.is_blocked(other.email, guesser)
        assert not login_throttle.is_blocked(other.email, "10.0.0.2")
        signed_in = client.post(
            "/accounts/login/",
            {"username": other.email, "password": PASSWORD},
            HTTP_X_FORWARDED_FOR=neighbour,
            **proxy,
        )
        assert signed_in.status_code == 302
    finally:
        for person in [*victims, other]:
            login_throttle.clear(person.email)
        for ip in (guesser, neighbour, "10.0.0.2"):
            cache.delete(f"login-fail:ip:{ip}")
