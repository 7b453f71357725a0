"""Roles and what they allow. docs/roles.md renders this table; tests/tenants/test_roles_matrix.py checks it.

Each permission is also gated by an API token scope, so a token can do at most what both its user's role
and its scopes allow.
"""

from enum import StrEnum
from typing import Final

from apps.accounts import scopes


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    BILLING = "billing"
    VIEWER = "viewer"


class Perm(StrEnum):
    TENANT_READ = "tenant.read"
    TENANT_UPDATE = "tenant.update"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    MEMBERS_LEAVE = "members.leave"  # remove one's own membership
    INVITATIONS_MANAGE = "invitations.manage"
    TOKENS_OWN = "tokens.own"  # create, list and revoke one's own tokens
    TOKENS_MANAGE = "tokens.manage"  # list and revoke everyone's tokens
    AUDIT_READ = "audit.read"
    QUOTA_MANAGE = "quota.manage"
    INSTANCES_READ = "instances.read"
    INSTANCES_WRITE = "instances.write"
    BILLING_READ = "billing.read"
    BILLING_WRITE = "billing.write"
    STORAGE_READ = "storage.read"
    STORAGE_WRITE = "storage.write"


_READER: Final = {Perm.TENANT_READ, Perm.MEMBERS_READ, Perm.MEMBERS_LEAVE, Perm.TOKENS_OWN}

ROLE_PERMISSIONS: Final[dict[Role, frozenset[Perm]]] = {
    Role.VIEWER: frozenset(_READER | {Perm.INSTANCES_READ, Perm.STORAGE_READ}),
    Role.MEMBER: frozenset(
        _READER | {Perm.INSTANCES_READ, Perm.INSTANCES_WRITE, Perm.STORAGE_READ, Perm.STORAGE_WRITE}
    ),
    Role.BILLING: frozenset(_READER | {Perm.BILLING_READ, Perm.BILLING_WRITE}),
    Role.ADMIN: frozenset(
        _READER
        | {
            Perm.TENANT_UPDATE,
            Perm.MEMBERS_MANAGE,
            Perm.INVITATIONS_MANAGE,
            Perm.TOKENS_MANAGE,
            Perm.AUDIT_READ,
            Perm.QUOTA_MANAGE,
            Perm.INSTANCES_READ,
            Perm.INSTANCES_WRITE,
            Perm.BILLING_READ,
            Perm.STORAGE_READ,
            Perm.STORAGE_WRITE,
        }
    ),
    Role.OWNER: frozenset(Perm),
}

# The token scope each permission needs when the caller authenticates with an API token.
PERM_SCOPE: Final[dict[Perm, str]] = {
    Perm.TENANT_READ: scopes.TENANT_READ,
    Perm.MEMBERS_READ: scopes.TENANT_READ,
    Perm.TENANT_UPDATE: scopes.TENANT_ADMIN,
    Perm.MEMBERS_MANAGE: scopes.TENANT_ADMIN,
    # Leaving changes the tenant as much as removing someone does: a read-only token must not do it.
    Perm.MEMBERS_LEAVE: scopes.TENANT_ADMIN,
    Perm.INVITATIONS_MANAGE: scopes.TENANT_ADMIN,
    Perm.TOKENS_OWN: scopes.TENANT_ADMIN,
    Perm.TOKENS_MANAGE: scopes.TENANT_ADMIN,
    Perm.AUDIT_READ: scopes.TENANT_ADMIN,
    Perm.QUOTA_MANAGE: scopes.TENANT_ADMIN,
    Perm.INSTANCES_READ: scopes.INSTANCES_READ,
    Perm.INSTANCES_WRITE: scopes.INSTANCES_WRITE,
    Perm.BILLING_READ: scopes.BILLING_READ,
    Perm.BILLING_WRITE: scopes.BILLING_WRITE,
    Perm.STORAGE_READ: scopes.STORAGE_READ,
    Perm.STORAGE_WRITE: scopes.STORAGE_WRITE,
}


def role_allows(role: str, perm: Perm) -> bool:
    return perm in ROLE_PERMISSIONS.get(Role(role), frozenset())


def grantable_scopes(role: str) -> frozenset[str]:
    """The scopes a member of this role may put on a token: those of the permissions the role has."""
    return frozenset(PERM_SCOPE[perm] for perm in ROLE_PERMISSIONS[Role(role)])


def can_grant_role(granter: str, role: str) -> bool:
    """Owners grant any role; admins any role but owner; nobody else manages roles."""
    return granter == Role.OWNER or (granter == Role.ADMIN and role != Role.OWNER)
