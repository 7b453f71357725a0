"""Two-factor in a real browser: a user turns it on from the Security page, typing the key into "their app"
(the test computes the app's codes from the key the page shows), then logs in with a code, and once with a
backup code."""

from __future__ import annotations

import re
import time
from base64 import b32decode
from typing import Any

from django_otp.oath import TOTP
from playwright.sync_api import Page, expect

from apps.audit.models import AuditEvent
from tests.browser.conftest import shoot
from tests.factories import PASSWORD, UserFactory


def app_code(manual_key: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app shows for the key typed into it (RFC 6238, 30-second steps, 6 digits)."""
    key = manual_key.replace(" ", "")
    totp = TOTP(b32decode(key + "=" * (-len(key) % 8)), step=30, t0=0, digits=6, drift=0)
    totp.time = time.time() + steps_ahead * 30
    return f"{totp.token():06d}"


def open_user_menu(page: Page, email: str) -> None:
    page.locator("details.user-menu > summary").click()
    expect(page.locator("details.user-menu")).to_have_attribute("open", "")


def password_step(page: Page, email: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def log_out(page: Page, email: str) -> None:
    open_user_menu(page, email)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_a_user_turns_on_two_factor_and_logs_in_with_a_code(
    live_server: Any, transactional_db: Any, settings: Any, page: Page
) -> None:
    # django-otp backs off for a second after a wrong code; a person never types that fast, a test does.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    user = UserFactory(email="hopper@example.com")
    password_step(page, user.email)
    expect(page.get_by_role("heading", name="Your tenants")).to_be_visible()

    # The user menu leads to the Security page, and from there to the set-up.
    open_user_menu(page, user.email)
    page.get_by_role("link", name="Security").click()
    expect(page.get_by_role("heading", name="Two-factor authentication")).to_be_visible()
    expect(page.get_by_text("Off.", exact=True)).to_be_visible()
    page.get_by_role("link", name="Set up two-factor authentication").click()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    manual_key = page.get_by_label("Key").input_value()
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{1,4})+", manual_key), manual_key
    shoot(page, "two-factor-setup")

    # A wrong code first: the field says so, and nothing is turned on.
    code_field = page.get_by_label("Code from the app")
    expect(code_field).to_have_attribute("inputmode", "numeric")
    expect(code_field).to_have_attribute("autocomplete", "one-time-code")
    wrong = next(
        c
        for c in ("000000", "111111", "222222")
        if c not in {app_code(manual_key, steps_ahead=s) for s in (-1, 0, 1)}
    )
    code_field.fill(wrong)
    page.get_by_role("button", name="Turn on two-factor").click()
    expect(page.get_by_text("That code is not correct.")).to_be_visible()

    page.get_by_label("Code from the app").fill(app_code(manual_key))
    page.get_by_role("button", name="Turn on two-factor").click()
    expect(page.get_by_role("heading", name="Two-factor authentication is on")).to_be_visible()
    backup_codes = page.get_by_role("list", name="Backup codes").get_by_role("listitem").all_inner_texts()
    assert len(backup_codes) == 10 and all(re.fullmatch(r"\d{5}-\d{5}", c) for c in backup_codes)
    shoot(page, "two-factor-backup-codes")
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_text("On.", exact=True)).to_be_visible()
    expect(page.get_by_text("10 unused backup codes left.")).to_be_visible()
    assert AuditEvent.objects.filter(action="two_factor.enabled", actor_user=user).exists()

    # Next log-in: the password is not enough, the code page comes next.
    log_out(page, user.email)
    password_step(page, user.email)
    expect(page.get_by_role("heading", name="Enter your authentication code")).to_be_visible()
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()  # not logged in yet
    password_step(page, user.email)
    page.get_by_label("Authentication code").fill(app_code(manual_key, steps_ahead=1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Your tenants")).to_be_visible()

    # Without the phone: a backup code, typed as it was shown.
    log_out(page, user.email)
    password_step(page, user.email)
    page.get_by_label("Authentication code").fill(backup_codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Your tenants")).to_be_visible()
    open_user_menu(page, user.email)
    page.get_by_role("link", name="Security").click()
    expect(page.get_by_text("9 unused backup codes left.")).to_be_visible()
