from django.db.models import QuerySet

from apps.accounts.models import ApiToken
from apps.tenants.models import Membership
from apps.tenants.roles import Perm, role_allows


def tokens_visible_to(*, membership: Membership) -> QuerySet[ApiToken]:
    """Admins and owners see every token of the tenant; everyone else only their own."""
    tokens = ApiToken.objects.filter(tenant=membership.tenant).select_related("user")
    if not role_allows(membership.role, Perm.TOKENS_MANAGE):
        tokens = tokens.filter(user_id=membership.user_id)
    return tokens
