"""Reads for tenants, memberships and invitations. Every selector takes the tenant or the user."""

from django.db.models import Q, QuerySet

from apps.accounts.models import ApiToken, SshKey, User
from apps.tenants.models import Invitation, Membership, Tenant
from apps.tenants.roles import Perm, role_allows


def tenants_for_user(*, user: User) -> QuerySet[Tenant]:
    return Tenant.objects.filter(memberships__user=user).order_by("slug")


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")


def members_of(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user")


def invitations_of(*, tenant: Tenant) -> QuerySet[Invitation]:
    return Invitation.objects.filter(tenant=tenant).select_related("invited_by")


def tokens_visible_to(*, membership: Membership) -> QuerySet[ApiToken]:
    """Admins and owners see every token of the tenant; everyone else only their own."""
    tokens = ApiToken.objects.filter(tenant=membership.tenant).select_related("user")
    if not role_allows(membership.role, Perm.TOKENS_MANAGE):
        tokens = tokens.filter(user_id=membership.user_id)
    return tokens


def ssh_keys_visible_to(*, membership: Membership) -> QuerySet[SshKey]:
    """The tenant's shared keys and the member's private ones; other members' private keys stay hidden."""
    return SshKey.objects.filter(tenant=membership.tenant).filter(
        Q(user__isnull=True) | Q(user_id=membership.user_id)
    )
