"""Two-factor authentication: an authenticator app (TOTP) and single-use backup codes, on django-otp models.

A user has at most one confirmed TOTPDevice and one StaticDevice holding the backup codes. Set-up creates an
unconfirmed device, and only a correct code from the app confirms it (replacing any earlier device), so a
half-finished set-up never locks anybody out. Staff must keep two-factor on: they can replace their device but
not disable it (apps/accounts/middleware.py enforces the rule on every request).
"""

from __future__ import annotations

import secrets
from base64 import b32encode
from typing import Any

from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts import services
from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.core.errors import Forbidden, InvalidInput

BACKUP_CODE_COUNT = 10
BACKUP_CODE_DIGITS = 10  # digits, so one numeric field takes both kinds of code; 6-digit codes are TOTP
DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"
WRONG_CODE = "That code is not correct. Enter the current code from your authenticator app."
SESSION_NOT_VERIFIED = "This session has not passed two-factor authentication. Enter a code in the console."


# --- reads ----------------------------------------------------------------------------------------------


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def has_confirmed_device(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def session_is_verified(user: Any) -> bool:
    """Whether the request's signed-in user passed a second factor in this session. django-otp's
    OTPMiddleware gives the request's user `is_verified`; a user without it (the middleware missing, a user
    loaded some other way) counts as not verified, so a staff check built on this fails closed."""
    verified = getattr(user, "is_verified", None)
    return bool(getattr(user, "is_authenticated", False)) and callable(verified) and bool(verified())


def pending_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()


def backup_codes_left(user: User) -> int:
    device = StaticDevice.objects.filter(user=user).first()
    return device.token_set.count() if device is not None else 0


def manual_key(device: TOTPDevice) -> str:
    """The secret as authenticator apps take it typed in: base32, in groups of four."""
    key = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code if ch.isalnum())


def format_backup_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


# --- verification ---------------------------------------------------------------------------------------


def _verify(user: User, code: str, *, devices: list[Device]) -> Device | None:
    """The device (already locked by the caller) that accepts `code`, if any. A wrong code counts against the
    device's own throttle (django-otp), and an accepted TOTP code can never be used again (last_t)."""
    code = normalize_code(code)
    for device in devices:
        if device.user_id != user.pk:
            continue
        if isinstance(device, TOTPDevice) and len(code) != device.digits:
            continue
        if isinstance(device, StaticDevice) and len(code) != BACKUP_CODE_DIGITS:
            continue
        if device.verify_token(code):
            return device
    return None


def _locked_devices(user: User) -> list[Device]:
    totp = list(TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
    static = list(StaticDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
    return [*totp, *static]


def code_throttled(user: User, code: str) -> bool:
    """Whether django-otp's per-device back-off (after wrong codes) refuses a code of this shape right now, so
    the page can say "wait" rather than "wrong"."""
    model = TOTPDevice if len(normalize_code(code)) != BACKUP_CODE_DIGITS else StaticDevice
    device = model.objects.filter(user=user, confirmed=True).first()
    return device is not None and not device.verify_is_allowed()[0]


def pending_throttled(user: User) -> bool:
    device = pending_device(user)
    return device is not None and not device.verify_is_allowed()[0]


def two_factor_verify(*, user: User, code: str) -> Device | None:
    """Check a log-in code: the app's current code or an unused backup code (which is then spent)."""
    with transaction.atomic():
        device = _verify(user, code, devices=_locked_devices(user))
        if isinstance(device, StaticDevice):
            audit_record(
                actor=user,
                action="two_factor.backup_code_used",
                target=user,
                metadata={"backup_codes_left": device.token_set.count()},
            )
    return device  # a wrong code returns None after committing the throttle counters


# --- writes ---------------------------------------------------------------------------------------------


@transaction.atomic
def two_factor_setup_start(*, user: User) -> TOTPDevice:
    """A fresh unconfirmed device with a new secret; an earlier unfinished set-up is dropped."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def _random_digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _new_backup_codes(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
    codes = [_random_digits(BACKUP_CODE_DIGITS) for _ in range(BACKUP_CODE_COUNT)]
    device.token_set.bulk_create([device.token_set.model(device=device, token=code) for code in codes])
    return codes


def two_factor_confirm(*, user: User, code: str, revoke_tokens: bool = False) -> tuple[TOTPDevice, list[str]]:
    """Confirm the pending device with a code from the app. It replaces any earlier device, and a fresh set of
    backup codes comes with it (returned here, shown once).

    Every session of the user ends: one signed in before, by whoever knew the password, never passed this
    factor (the caller re-stamps its own session). With `revoke_tokens`, every API token of the user is
    revoked too, for the same reason."""
    with transaction.atomic():
        pending = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False)
        device = pending.order_by("-pk").first()
        if device is None:
            raise InvalidInput(
                "Start the set-up again: there is no authenticator waiting to be confirmed.",
                code="two_factor_no_pending_device",
            )
        if _verify(user, code, devices=[device]) is not None:
            replaced = TOTPDevice.objects.filter(user=user, confirmed=True).exclude(pk=device.pk)
            had_device = replaced.exists()
            replaced.delete()
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _new_backup_codes(user)
            services.user_sessions_end(user=user)
            revoked = (
                services.tokens_revoke_all(actor=user, user=user, reason="two_factor_enabled")
                if revoke_tokens
                else 0
            )
            audit_record(
                actor=user,
                action="two_factor.enabled",
                target=user,
                changes={"replaced_device": had_device},
                metadata={"backup_codes": len(codes), "sessions_ended": True, "tokens_revoked": revoked},
            )
            return device, codes
    # Outside the transaction, so the device's count of wrong codes stays committed.
    raise InvalidInput(WRONG_CODE, fields={"code": [WRONG_CODE]})


@transaction.atomic
def two_factor_backup_codes_regenerate(*, user: User) -> list[str]:
    """Ten new backup codes; the old ones stop working."""
    if not TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).exists():
        raise InvalidInput("Turn on two-factor authentication first.", code="two_factor_not_enabled")
    codes = _new_backup_codes(user)
    audit_record(
        actor=user,
        action="two_factor.backup_codes_regenerated",
        target=user,
        metadata={"backup_codes": len(codes)},
    )
    return codes


def two_factor_disable(*, user: User, code: str = "", password: str = "") -> None:
    """Turn two-factor off, proven by a current code (or backup code) or the account password. Staff cannot:
    for them it is mandatory, and a lost phone is handled by replacing the device."""
    if user.is_staff:
        raise Forbidden(
            "Two-factor authentication is mandatory for staff. Replace your authenticator instead.",
            code="two_factor_required_for_staff",
        )
    if not code and not password:
        message = "Enter a current code or your password."
        raise InvalidInput(message, fields={"code": [message]})
    with transaction.atomic():
        devices = _locked_devices(user)
        if not any(isinstance(d, TOTPDevice) for d in devices):
            raise InvalidInput("Two-factor authentication is not on.", code="two_factor_not_enabled")
        proven = (bool(password) and user.check_password(password)) or (
            bool(code) and _verify(user, code, devices=devices) is not None
        )
        if proven:
            TOTPDevice.objects.filter(user=user).delete()
            StaticDevice.objects.filter(user=user).delete()
            audit_record(actor=user, action="two_factor.disabled", target=user)
            return
    field = "password" if password and not code else "code"
    message = "That password is not correct." if field == "password" else WRONG_CODE
    raise InvalidInput(message, fields={field: [message]})
