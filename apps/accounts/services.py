"""Writes for users and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts import scopes as scope_defs
from apps.accounts import ssh_keys, token_secrets
from apps.accounts.models import ApiToken, SshKey, User
from apps.audit.services import audit_record
from apps.core.errors import Conflict, Forbidden, InvalidInput
from apps.tenants.models import Membership
from apps.tenants.roles import grantable_scopes

EMAIL_VERIFICATION_SALT = "gpucloud.accounts.email-verification"


@transaction.atomic
def user_signup(*, email: str, password: str, full_name: str = "") -> User:
    email = email.strip().lower()
    try:
        validate_password(password, User(email=email, full_name=full_name))
    except DjangoValidationError as exc:
        raise InvalidInput(exc.messages[0], fields={"password": list(exc.messages)}) from exc
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=full_name)
    except IntegrityError as exc:
        raise InvalidInput(
            "An account with this email exists.", fields={"email": ["Already registered."]}
        ) from exc
    audit_record(actor=user, action="user.signup", target=user)
    transaction.on_commit(lambda: send_verification_email(user))
    return user


def email_verification_token(user: User) -> str:
    return signing.dumps({"uid": user.pk, "email": user.email}, salt=EMAIL_VERIFICATION_SALT)


def send_verification_email(user: User) -> None:
    from apps.accounts.tasks import send_verification_email_task

    send_verification_email_task.delay(user.pk)


@transaction.atomic
def user_verify_email(*, token: str) -> User:
    max_age = settings.EMAIL_VERIFICATION_TTL_HOURS * 3600
    try:
        data = signing.loads(token, salt=EMAIL_VERIFICATION_SALT, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise InvalidInput(
            "This verification link has expired; request a new one.", code="link_expired"
        ) from exc
    except signing.BadSignature as exc:
        raise InvalidInput("This verification link is invalid.", code="link_invalid") from exc
    user = User.objects.select_for_update().filter(pk=data.get("uid"), email=data.get("email")).first()
    if user is None:
        raise InvalidInput("This verification link is invalid.", code="link_invalid")
    if user.email_verified_at is None:
        user.email_verified_at = timezone.now()
        user.save(update_fields=["email_verified_at"])
        audit_record(actor=user, action="user.verify_email", target=user)
    return user


@transaction.atomic
def user_reset_password(*, user: User, password: str) -> User:
    """Set a new password from a reset link (the form validated it) and audit the change."""
    user.set_password(password)
    user.save(update_fields=["password"])
    audit_record(actor=user, action="user.reset_password", target=user)
    return user


def _check_scopes(requested: list[str], role: str) -> list[str]:
    unknown = sorted(set(requested) - set(scope_defs.ALL_SCOPES))
    if unknown:
        raise InvalidInput(
            f"Unknown scope '{unknown[0]}'.", fields={"scopes": [f"Unknown scope '{s}'." for s in unknown]}
        )
    if not requested:
        raise InvalidInput(
            "A token needs at least one scope.", fields={"scopes": ["At least one scope is required."]}
        )
    beyond = sorted(set(requested) - grantable_scopes(role))
    if beyond:
        raise InvalidInput(
            f"Your role '{role}' cannot grant the scope '{beyond[0]}'.",
            fields={"scopes": [f"Your role '{role}' cannot grant '{s}'." for s in beyond]},
        )
    return sorted(set(requested))


@transaction.atomic
def token_create(
    *, user: User, membership: Membership, name: str, scopes: list[str], expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `user` in the membership's tenant. Returns it and its secret, shown once."""
    if membership.user_id != user.pk:
        raise Forbidden("Tokens can only be created for yourself.")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(
            "The expiry must be in the future.", fields={"expires_at": ["Must be in the future."]}
        )
    checked = _check_scopes(scopes, membership.role)
    secret = token_secrets.generate()
    token = ApiToken.objects.create(
        user=user,
        tenant=membership.tenant,
        name=name,
        prefix=secret.prefix,
        secret_hash=secret.digest,
        scopes=checked,
        expires_at=expires_at,
    )
    audit_record(
        actor=user,
        action="token.create",
        target=token,
        tenant=membership.tenant,
        changes={
            "name": name,
            "scopes": checked,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, secret.plaintext


@transaction.atomic
def token_revoke(*, actor: User | None, token: ApiToken) -> ApiToken:
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise Conflict("This token is already revoked.", code="token_revoked")
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="token.revoke",
        target=token,
        tenant=token.tenant,
        metadata={"name": token.name, "prefix": token.prefix, "owner": token.user.email},
    )
    return token


@transaction.atomic
def ssh_key_create(*, actor: User, tenant: Any, name: str, public_key: str, private: bool = False) -> SshKey:
    """Add a public key to the tenant; `private` keeps it to `actor` alone."""
    try:
        parsed = ssh_keys.parse(public_key)
    except ssh_keys.InvalidSshKey as exc:
        raise InvalidInput(str(exc), fields={"public_key": [str(exc)]}) from exc
    key = SshKey(
        tenant=tenant,
        user=actor if private else None,
        name=name,
        public_key=parsed.normalized,
        key_type=parsed.key_type,
        bits=parsed.bits,
        fingerprint=parsed.fingerprint,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            key.save()
    except IntegrityError as exc:
        raise InvalidInput(
            "This key is already in the tenant.",
            fields={"public_key": [f"Already added ({parsed.fingerprint})."]},
        ) from exc
    audit_record(
        actor=actor,
        action="ssh_key.create",
        target=key,
        tenant=tenant,
        changes={"name": name, "fingerprint": parsed.fingerprint, "private": private},
    )
    return key


@transaction.atomic
def ssh_key_delete(*, actor: User, key: SshKey) -> None:
    audit_record(
        actor=actor,
        action="ssh_key.delete",
        target=key,
        tenant=key.tenant,
        metadata={"name": key.name, "fingerprint": key.fingerprint},
    )
    key.delete()
