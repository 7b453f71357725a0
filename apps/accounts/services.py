"""Writes for users, API tokens (their creation, which needs the tenant's roles, is apps/tenants/tokens.py)
and SSH keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts import ssh_keys
from apps.accounts.models import ApiToken, SshKey, User
from apps.audit.services import audit_record
from apps.core.errors import Conflict, InvalidInput

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
    """Set a new password from a reset link (the form validated it) and audit the change. Whoever needed the
    reset may have lost the old password to someone else, who may have made API tokens with it: they are all
    revoked. The new password also signs out every session (Django's session hash covers the password)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    revoked = tokens_revoke_all(actor=user, user=user, reason="password_reset")
    audit_record(actor=user, action="user.reset_password", target=user, metadata={"tokens_revoked": revoked})
    return user


def user_sessions_end(*, user: User) -> None:
    """Sign out every session of the user: each session keeps the user's session hash, which covers
    `session_epoch` (User._get_session_auth_hash). A caller that keeps its own session re-stamps it with
    django.contrib.auth.update_session_auth_hash."""
    User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)
    user.refresh_from_db(fields=["session_epoch"])


def _locked_descendants(root: ApiToken) -> list[ApiToken]:
    """Every token made from `root`, directly or through others, locked a generation at a time: a token is
    locked before its children are read, and token_create locks the parent, so no child is added unseen."""
    found: list[ApiToken] = []
    generation = [root.pk]
    while generation:
        children = list(
            ApiToken.objects.select_for_update(of=("self",))
            .select_related("user", "tenant")
            .filter(parent_id__in=generation)
            .order_by("pk")
        )
        found.extend(children)
        generation = [child.pk for child in children]
    return found


def _revoke_locked(*, actor: User | None, token: ApiToken, now: datetime, **metadata: Any) -> None:
    token.revoked_at = now
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="token.revoke",
        target=token,
        tenant=token.tenant,
        metadata={"name": token.name, "prefix": token.prefix, "owner": token.user.email, **metadata},
    )


@transaction.atomic
def token_revoke(*, actor: User | None, token: ApiToken) -> ApiToken:
    """Revoke a token and every token made from it; all stop authenticating when this commits."""
    token = ApiToken.objects.select_for_update(of=("self",)).select_related("user", "tenant").get(pk=token.pk)
    if token.revoked_at is not None:
        raise Conflict("This token is already revoked.", code="token_revoked")
    now = timezone.now()
    descendants = [t for t in _locked_descendants(token) if t.revoked_at is None]
    _revoke_locked(actor=actor, token=token, now=now, descendants_revoked=len(descendants))
    for child in descendants:
        _revoke_locked(actor=actor, token=child, now=now, reason="parent_revoked", revoked_with=token.prefix)
    return token


@transaction.atomic
def tokens_revoke_all(*, actor: User | None, user: User, reason: str) -> int:
    """Revoke every active token of `user` in every tenant (tokens made by tokens are the user's too), each
    audited in its tenant with `reason`. Returns how many. Repeats until none is left: a token that was
    creating a child while this ran holds its own lock until that child is committed, and the next round
    finds the child."""
    now = timezone.now()
    revoked = 0
    while True:
        active = list(
            ApiToken.objects.select_for_update(of=("self",))
            .select_related("user", "tenant")
            .filter(user_id=user.pk, revoked_at__isnull=True)
            .order_by("pk")
        )
        if not active:
            return revoked
        for token in active:
            _revoke_locked(actor=actor, token=token, now=now, reason=reason)
        revoked += len(active)


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
