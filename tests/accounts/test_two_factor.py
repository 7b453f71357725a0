"""Two-factor authentication: set-up with a real authenticator code, the code step of log-in, backup codes,
replay and rate limits, turning it off, and the rule that staff reach nothing without it."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import NoReverseMatch, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter, SlugConverter, UUIDConverter
from django.urls.resolvers import RoutePattern
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.accounts import two_factor
from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.errors import Forbidden
from apps.tenants.roles import Role
from tests.conftest import Actor, login_staff, totp_code, totp_device
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = reverse("login")
VERIFY = reverse("two_factor_verify")
SETUP = reverse("two_factor_setup")
STATUS = reverse("two_factor")
IP_FAILURES = "login-fail:ip:127.0.0.1"  # apps/accounts/login_throttle.py


@pytest.fixture(autouse=True)
def _fresh_limits(settings: Any) -> Iterator[None]:
    """django-otp also backs off per device after a wrong code (1 s, 2 s, 4 s...): tests that type a wrong
    code and then the right one switch it off rather than race it (one test below checks it on its own).
    The per-IP failure count lives in the shared cache, and every test client is 127.0.0.1: it starts and
    ends each test at zero, so wrong codes here do not spill into other tests."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0
    cache.delete(IP_FAILURES)
    yield
    cache.delete(IP_FAILURES)


def wrong_code(device: TOTPDevice) -> str:
    """A 6-digit code outside the window django-otp accepts right now."""
    window = {totp_code(device, steps_ahead=s) for s in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in window)


def enabled_user(**fields: Any) -> tuple[User, TOTPDevice, list[str]]:
    """A user who turned two-factor on through the service (a device confirmed with a real code)."""
    user = UserFactory(**fields)
    device = two_factor.two_factor_setup_start(user=user)
    _device, codes = two_factor.two_factor_confirm(user=user, code=totp_code(device))
    device.refresh_from_db()
    return user, device, codes


def password_step(client: Client, user: User, **extra: str) -> Any:
    return client.post(LOGIN, {"username": user.email, "password": PASSWORD, **extra})


def unverified_session(user: User, client: Any = None) -> Any:
    """A signed-in session that never passed a second factor (what the middleware must stop for staff).
    Deliberately not login_staff: this is the session login_staff exists to avoid."""
    client = client or Client()
    client.force_login(user)
    return client


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- set-up ----------------------------------------------------------------------------------------------


def test_setup_shows_a_qr_code_and_the_key_and_confirms_with_a_real_code(client: Client) -> None:
    user = UserFactory()
    client.force_login(user)

    page = client.get(SETUP)

    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    html = page.content.decode()
    assert re.search(r'<svg role="img"[^>]*><title>QR code for your authenticator app</title>', html)
    assert two_factor.manual_key(device) in html
    assert 'inputmode="numeric"' in html and 'autocomplete="one-time-code"' in html
    assert re.search(r'<label for="id_code">Code from the app', html)
    assert client.get(SETUP).context["manual_key"] == two_factor.manual_key(device)  # reloading keeps it
    assert "otpauth://totp/gpucloud%3A" in device.config_url  # the issuer the app shows

    done = client.post(SETUP, {"code": totp_code(device)})

    assert done.status_code == 200
    assert done["Cache-Control"] == "no-store"
    device.refresh_from_db()
    assert device.confirmed
    codes = done.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(re.fullmatch(r"\d{5}-\d{5}", c) for c in codes)
    assert all(c in done.content.decode() for c in codes)
    assert StaticToken.objects.filter(device__user=user).count() == 10
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id  # this session counts as verified
    event = AuditEvent.objects.get(action="two_factor.enabled")
    assert (event.actor_user, event.target_id, event.changes) == (
        user,
        str(user.pk),
        {"replaced_device": False},
    )
    assert client.get(STATUS).context["backup_codes_left"] == 10


def test_a_wrong_code_is_refused_with_a_field_error(client: Client) -> None:
    user = UserFactory()
    client.force_login(user)
    client.get(SETUP)
    device = TOTPDevice.objects.get(user=user)

    response = client.post(SETUP, {"code": wrong_code(device)})

    assert response.status_code == 400
    assert response.context["form"].errors["code"] == [two_factor.WRONG_CODE]
    assert 'aria-invalid="true"' in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    assert not AuditEvent.objects.filter(action="two_factor.enabled").exists()
    assert DEVICE_ID_SESSION_KEY not in client.session
    # The same device, same QR code, waits for the right code.
    assert response.context["manual_key"] == two_factor.manual_key(device)
    assert client.post(SETUP, {"code": totp_code(device)}).status_code == 200


def test_the_setup_form_needs_the_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    user = UserFactory()
    client.force_login(user)
    client.get(SETUP)
    device = TOTPDevice.objects.get(user=user)

    assert client.post(SETUP, {"code": totp_code(device)}).status_code == 403
    device.refresh_from_db()
    assert not device.confirmed


def test_the_security_page_is_in_the_user_menu(client: Client) -> None:
    client.force_login(UserFactory())
    page = client.get(reverse("console:home")).content.decode()
    assert f'<a href="{STATUS}">Security</a>' in page


# --- log-in ----------------------------------------------------------------------------------------------


def test_login_asks_for_the_code_before_the_session_is_logged_in(client: Client) -> None:
    user, device, _codes = enabled_user()

    first = password_step(client, user)

    assert first.status_code == 302 and first.url == VERIFY
    assert not logged_in(client)  # a password alone is not a session
    assert client.get(reverse("console:home")).url.startswith(LOGIN)
    page = client.get(VERIFY)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'inputmode="numeric"' in html and 'autocomplete="one-time-code"' in html
    assert '<label for="id_code">Authentication code' in html

    second = client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert second.status_code == 302 and second.url == reverse("console:home")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.get(reverse("console:home")).status_code == 200


def test_the_code_step_keeps_the_next_url(client: Client) -> None:
    user, device, _codes = enabled_user()
    target = reverse("console:home") + "?from=mail"

    password_step(client, user, next=target)
    response = client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert response.url == target


def test_a_customer_without_two_factor_logs_in_with_the_password_only(client: Client) -> None:
    user = UserFactory()

    response = password_step(client, user)

    assert response.status_code == 302 and response.url == reverse("console:home")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(reverse("console:home")).status_code == 200
    assert client.get("/api/v1/me").status_code == 200


def test_the_password_step_does_not_tell_whether_an_address_exists(client: Client) -> None:
    user, _device, _codes = enabled_user()

    unknown = client.post(LOGIN, {"username": "nobody@example.com", "password": "wrong-password-1"})
    wrong = client.post(LOGIN, {"username": user.email, "password": "wrong-password-1"})

    assert unknown.status_code == wrong.status_code == 400
    assert unknown.context["form"].non_field_errors() == wrong.context["form"].non_field_errors()
    assert client.get(VERIFY).url == LOGIN  # nothing pending: straight back to the password


def test_a_backup_code_works_once(client: Client) -> None:
    user, _device, codes = enabled_user()

    password_step(client, user)
    first = client.post(VERIFY, {"code": codes[0]})  # typed as shown, with its dash

    assert first.status_code == 302 and logged_in(client)
    assert StaticToken.objects.filter(device__user=user).count() == 9
    used = AuditEvent.objects.get(action="two_factor.backup_code_used")
    assert used.actor_user == user and used.metadata == {"backup_codes_left": 9}

    again = Client()
    password_step(again, user)
    refused = again.post(VERIFY, {"code": codes[0].replace("-", "")})

    assert refused.status_code == 400
    assert refused.context["form"].errors["code"]
    assert not logged_in(again)


def test_a_totp_code_cannot_be_replayed(client: Client) -> None:
    user, device, _codes = enabled_user()
    code = totp_code(device, steps_ahead=1)
    password_step(client, user)
    assert client.post(VERIFY, {"code": code}).status_code == 302

    thief = Client()
    password_step(thief, user)
    replayed = thief.post(VERIFY, {"code": code})

    assert replayed.status_code == 400
    assert not logged_in(thief)
    device.refresh_from_db()
    assert device.last_t >= 0  # django-otp remembers the step of the last accepted code


def test_repeated_wrong_codes_are_rate_limited_like_passwords(client: Client, settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    user, device, _codes = enabled_user()
    password_step(client, user)

    for _ in range(3):
        assert client.post(VERIFY, {"code": wrong_code(device)}).status_code == 400
    blocked = client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert blocked.status_code == 429
    assert "Too many failed attempts" in blocked.content.decode()
    assert not logged_in(client)
    # The same budget as the password: the password step is closed too, even with the right password.
    assert password_step(Client(), user).status_code == 429


def test_a_correct_code_clears_the_failures(client: Client, settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    user, device, _codes = enabled_user()
    password_step(client, user)
    for _ in range(2):
        client.post(VERIFY, {"code": wrong_code(device)})

    assert client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)}).status_code == 302

    other = Client()
    password_step(other, user)
    assert other.post(VERIFY, {"code": wrong_code(device)}).status_code == 400  # not 429


def test_the_device_back_off_says_to_wait(client: Client, settings: Any) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 3600  # a back-off no test run outlasts
    user, device, _codes = enabled_user()
    password_step(client, user)
    client.post(VERIFY, {"code": wrong_code(device)})

    response = client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert response.status_code == 429
    assert "Wait a few seconds" in response.content.decode()
    assert not logged_in(client)


def test_a_pending_login_expires(client: Client) -> None:
    user, device, _codes = enabled_user()
    password_step(client, user)
    session = client.session
    session["two_factor_pending"] = {**session["two_factor_pending"], "since": 0}
    session.save()

    response = client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert response.status_code == 302 and response.url == LOGIN
    assert not logged_in(client)


def test_an_older_session_of_a_user_who_turned_two_factor_on_must_verify() -> None:
    user, device, _codes = enabled_user()
    older = unverified_session(user)

    assert older.get(reverse("console:home")).url == f"{VERIFY}?next=%2F"
    refused = older.get("/api/v1/me")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "two_factor_required"
    # Nor can that session swap the device for one of its own.
    assert older.get(SETUP).url.startswith(VERIFY)
    assert older.post(VERIFY, {"code": totp_code(device, steps_ahead=1)}).url == reverse("console:home")
    assert older.get("/api/v1/me").status_code == 200


# --- staff -----------------------------------------------------------------------------------------------


@pytest.fixture
def staff_member(make_actor: Callable[..., Actor]) -> Actor:
    """A staff user who is also the owner of a tenant (so tenant pages would otherwise be theirs)."""
    return make_actor(Role.OWNER, is_staff=True, is_superuser=True)


def test_staff_without_a_device_are_sent_to_setup_from_everywhere(staff_member: Actor) -> None:
    client = unverified_session(staff_member.user)
    slug = staff_member.tenant.slug

    paths = (
        "/",
        "/admin/",
        "/admin/tenants/tenant/",
        f"/t/{slug}/",
        f"/t/{slug}/instances/",
        "/staff/",
        STATUS,
    )
    for path in (*paths, STATUS):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.url.startswith(SETUP + "?next="), (path, response.url)
    posted = client.post(f"/t/{slug}/ssh-keys/", {"name": "k", "public_key": "x"})
    assert posted.status_code == 302 and posted.url == SETUP
    page = client.get(SETUP)
    assert page.status_code == 200
    assert "Staff accounts must use two-factor authentication" in page.content.decode()


EXEMPT = {"login", "logout", "two_factor_setup", "two_factor_verify"}


def every_route(slug: str) -> Iterator[tuple[str, str]]:
    """(name, URL) of every named route with path() syntax, its parameters filled with plausible values."""
    values = {UUIDConverter: str(uuid.uuid4()), SlugConverter: slug, IntConverter: "1"}

    def walk(patterns: list[Any], namespace: str) -> Iterator[tuple[str, str]]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, entry.namespace or namespace)
            elif entry.name and isinstance(entry.pattern, RoutePattern):
                name = f"{namespace}:{entry.name}" if namespace else entry.name
                converters = entry.pattern.converters
                kwargs = {key: values.get(type(conv), "x") for key, conv in converters.items()}
                with contextlib.suppress(NoReverseMatch):  # an included prefix with its own parameters
                    yield name, reverse(name, kwargs=kwargs)

    yield from walk(get_resolver().url_patterns, "")


def test_every_route_refuses_an_unverified_staff_session(staff_member: Actor) -> None:
    """By rule, not by list: a page added tomorrow (the staff console too) is covered the day it lands."""
    page_client = unverified_session(staff_member.user)
    api_client = unverified_session(staff_member.user, APIClient())
    checked = set()
    for name, url in every_route(staff_member.tenant.slug):
        if name in EXEMPT:
            continue
        if url.startswith("/api/"):
            response = api_client.get(url)
            assert response.status_code == 403, (name, url, response.status_code)
            assert response.json()["error"]["code"] == "two_factor_required", name
        else:
            response = page_client.get(url)
            assert response.status_code == 302, (name, url, response.status_code)
            assert response.url.startswith(SETUP), (name, url, response.url)
        checked.add(name)
    for name in (
        "console:home",
        "console:dashboard",
        "console:staff_tenants",
        "admin:index",
        "api:tenant-list",
    ):
        assert name in checked, name


def test_staff_with_a_device_but_no_code_are_sent_to_the_code_page(staff_member: Actor) -> None:
    totp_device(staff_member.user)
    client = unverified_session(staff_member.user)

    for path in ("/", "/admin/", f"/t/{staff_member.tenant.slug}/"):
        assert client.get(path).url.startswith(VERIFY + "?next="), path


def test_staff_sessions_get_403_two_factor_required_from_the_api(staff_member: Actor) -> None:
    client = unverified_session(staff_member.user, APIClient())
    slug = staff_member.tenant.slug

    for method, path in (
        ("post", f"/api/v1/staff/tenants/{slug}/credit-grants"),
        ("put", f"/api/v1/staff/tenants/{slug}/billing-mode"),
        ("get", "/api/v1/me"),
        ("get", f"/api/v1/tenants/{slug}/instances"),
    ):
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "two_factor_required", path


def test_api_tokens_are_not_affected(staff_member: Actor) -> None:
    """Tokens are for customers' automation; the two-factor rule is about console sessions."""
    client = staff_member.token_client()
    assert client.get("/api/v1/me").status_code == 200
    assert client.get(staff_member.url("/instances")).status_code == 200


def test_verified_staff_reach_the_admin_and_the_staff_api(staff_member: Actor) -> None:
    client = login_staff(Client(), staff_member.user)
    assert client.get("/admin/").status_code == 200
    assert client.get(f"/t/{staff_member.tenant.slug}/").status_code == 200

    api = login_staff(APIClient(), staff_member.user)
    response = api.post(
        f"/api/v1/staff/tenants/{staff_member.tenant.slug}/credit-grants",
        {"amount": "5.00", "reason": "goodwill", "kind": "promotional"},
        format="json",
    )
    assert response.status_code == 201, response.content


def test_staff_log_in_then_must_set_up_two_factor_before_anything(client: Client) -> None:
    staff = UserFactory(is_staff=True, is_superuser=True)

    home = client.post(LOGIN, {"username": staff.email, "password": PASSWORD, "next": "/admin/"})
    assert home.url == "/admin/"
    setup_redirect = client.get("/admin/")
    assert setup_redirect.url == f"{SETUP}?next=%2Fadmin%2F"
    client.get(setup_redirect.url)
    device = TOTPDevice.objects.get(user=staff)

    done = client.post(SETUP, {"code": totp_code(device), "next": "/admin/"})

    assert done.status_code == 200
    assert 'href="/admin/">Continue' in done.content.decode()
    assert client.get("/admin/").status_code == 200


def test_staff_log_in_through_the_code_page(client: Client) -> None:
    staff, device, _codes = enabled_user(is_staff=True, is_superuser=True)

    client.post(LOGIN, {"username": staff.email, "password": PASSWORD, "next": "/admin/"})
    assert not logged_in(client)
    response = client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_the_admin_login_page_is_our_login_page(client: Client) -> None:
    response = client.get("/admin/login/?next=/admin/tenants/")
    assert response.status_code == 302
    assert response.url == f"{LOGIN}?next=%2Fadmin%2Ftenants%2F"
    # Its password form is not there for a signed-in customer to try staff passwords on either.
    client.force_login(UserFactory())
    assert client.post("/admin/login/", {"username": "x@example.com", "password": "y"}).status_code == 404


def test_an_unverified_staff_session_can_still_log_out(staff_member: Actor) -> None:
    client = unverified_session(staff_member.user)
    response = client.post(reverse("logout"))
    assert response.status_code == 302 and response.url == LOGIN
    assert not logged_in(client)


# --- turning it off, new backup codes, a new device -----------------------------------------------------


def test_disable_needs_a_current_code_or_the_password(client: Client) -> None:
    user, device, _codes = enabled_user()
    login_with_code = Client()
    password_step(login_with_code, user)
    login_with_code.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})
    disable = reverse("two_factor_disable")

    nothing = login_with_code.post(disable, {})
    bad_code = login_with_code.post(disable, {"code": wrong_code(device)})
    bad_password = login_with_code.post(disable, {"password": "not-my-password"})

    assert nothing.status_code == bad_code.status_code == bad_password.status_code == 400
    assert bad_code.context["disable_form"].errors["code"]
    assert bad_password.context["disable_form"].errors["password"] == ["That password is not correct."]
    assert TOTPDevice.objects.filter(user=user, confirmed=True).exists()

    done = login_with_code.post(disable, {"password": PASSWORD})

    assert done.status_code == 302 and done.url == STATUS
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not StaticDevice.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(action="two_factor.disabled", actor_user=user).count() == 1
    assert login_with_code.get(reverse("console:home")).status_code == 200  # still signed in
    fresh = Client()
    assert password_step(fresh, user).url == reverse("console:home")  # the password is enough again
    assert logged_in(fresh)


def test_disable_with_a_backup_code(client: Client) -> None:
    user, device, codes = enabled_user()
    password_step(client, user)
    client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    assert client.post(reverse("two_factor_disable"), {"code": codes[3]}).status_code == 302
    assert not TOTPDevice.objects.filter(user=user).exists()


def test_staff_cannot_turn_two_factor_off(staff_member: Actor) -> None:
    client = login_staff(Client(), staff_member.user)

    page = client.get(STATUS)
    refused = client.post(reverse("two_factor_disable"), {"password": PASSWORD})

    assert "mandatory for staff" in page.content.decode()
    assert 'action="/accounts/two-factor/disable/"' not in page.content.decode()
    assert refused.status_code == 403
    assert "mandatory for staff" in refused.content.decode()
    assert TOTPDevice.objects.filter(user=staff_member.user, confirmed=True).exists()
    assert not AuditEvent.objects.filter(action="two_factor.disabled").exists()
    with pytest.raises(Forbidden):
        two_factor.two_factor_disable(user=staff_member.user, password=PASSWORD)


def test_staff_replace_their_device(staff_member: Actor) -> None:
    client = login_staff(Client(), staff_member.user)
    old = TOTPDevice.objects.get(user=staff_member.user)

    page = client.get(SETUP)
    assert "Replace your authenticator" in page.content.decode()
    new = TOTPDevice.objects.get(user=staff_member.user, confirmed=False)
    assert client.get("/admin/").status_code == 200  # the old device still counts until the new one is in
    done = client.post(SETUP, {"code": totp_code(new)})

    assert done.status_code == 200
    assert list(TOTPDevice.objects.filter(user=staff_member.user)) == [new]
    assert not TOTPDevice.objects.filter(pk=old.pk).exists()
    assert client.get("/admin/").status_code == 200  # this session moved to the new device
    event = AuditEvent.objects.get(action="two_factor.enabled")
    assert event.changes == {"replaced_device": True}


def test_new_backup_codes_replace_the_old_ones(client: Client) -> None:
    user, device, old_codes = enabled_user()
    password_step(client, user)
    client.post(VERIFY, {"code": totp_code(device, steps_ahead=1)})

    response = client.post(reverse("two_factor_backup_codes"))

    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    new_codes = response.context["codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert AuditEvent.objects.filter(action="two_factor.backup_codes_regenerated", actor_user=user).exists()
    for code, accepted in ((old_codes[0], False), (new_codes[0], True)):
        other = Client()
        password_step(other, user)
        assert (other.post(VERIFY, {"code": code}).status_code == 302) is accepted, code


def test_backup_codes_need_two_factor_on(client: Client) -> None:
    user = UserFactory()
    client.force_login(user)
    response = client.post(reverse("two_factor_backup_codes"), follow=True)
    assert "Turn on two-factor authentication first." in response.content.decode()
    assert not StaticDevice.objects.filter(user=user).exists()
