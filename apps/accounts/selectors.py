from django.db.models import Q, QuerySet

from apps.accounts.models import ApiToken, SshKey
from apps.tenants.models import Membership
from apps.tenants.roles import Perm, role_allows


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
