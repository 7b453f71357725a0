"""Creating API tokens: a token acts for one member in one tenant, with at most the scopes the member's
role may grant (apps/tenants/roles.py), so its creation lives with memberships (revoking is in
apps/accounts/services.py)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.accounts import scopes as scope_defs
from apps.accounts import token_secrets
from apps.accounts.models import ApiToken, User
from apps.audit.services import audit_record
from apps.core.errors import Conflict, Forbidden, InvalidInput
from apps.tenants.models import Membership
from apps.tenants.roles import grantable_scopes


def _check_scopes(requested: list[str], role: str, parent: ApiToken | None) -> list[str]:
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
    if parent is not None:
        not_held = sorted(set(requested) - scope_defs.expand(parent.scopes))
        if not_held:
            raise InvalidInput(
                f"This API token cannot grant the scope '{not_held[0]}': a token can only create tokens with "
                "scopes it holds itself.",
                fields={"scopes": [f"The API token making the request lacks '{s}'." for s in not_held]},
            )
    return sorted(set(requested))


def _bounded_expiry(expires_at: datetime | None, parent: ApiToken | None) -> datetime | None:
    """A token made by a token expires no later than it; given no expiry, it takes the parent's."""
    if parent is None or parent.expires_at is None:
        return expires_at
    if expires_at is None:
        return parent.expires_at
    if expires_at > parent.expires_at:
        limit = parent.expires_at.isoformat()
        raise InvalidInput(
            f"The expiry cannot be later than that of the API token making the request ({limit}).",
            fields={"expires_at": [f"Must be no later than {limit}."]},
        )
    return expires_at


def _lock_parent(parent: ApiToken, membership: Membership) -> ApiToken:
    """The token making the request, locked: token_revoke locks it too, so a token being revoked cannot
    slip a child past the revocation of its descendants."""
    locked = ApiToken.objects.select_for_update().get(pk=parent.pk)
    if locked.user_id != membership.user_id or locked.tenant_id != membership.tenant_id:
        raise Forbidden("A token can only create tokens for its own user and tenant.")
    if not locked.is_active:
        raise Conflict("The API token making this request is revoked or expired.", code="token_revoked")
    return locked


@transaction.atomic
def token_create(
    *,
    user: User,
    membership: Membership,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    parent: ApiToken | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `user` in the membership's tenant. Returns it and its secret, shown once.

    `parent` is the API token the request authenticated with, if any: the new token may hold only scopes the
    parent holds and expire no later than it, and revoking the parent revokes it."""
    if membership.user_id != user.pk:
        raise Forbidden("Tokens can only be created for yourself.")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput(
            "The expiry must be in the future.", fields={"expires_at": ["Must be in the future."]}
        )
    if parent is not None:
        parent = _lock_parent(parent, membership)
    checked = _check_scopes(scopes, membership.role, parent)
    expires_at = _bounded_expiry(expires_at, parent)
    secret = token_secrets.generate()
    token = ApiToken.objects.create(
        user=user,
        tenant=membership.tenant,
        name=name,
        prefix=secret.prefix,
        secret_hash=secret.digest,
        scopes=checked,
        expires_at=expires_at,
        parent=parent,
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
            "parent": parent.prefix if parent else None,
        },
    )
    return token, secret.plaintext
