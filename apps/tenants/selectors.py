"""Reads for tenants, memberships and invitations. Every selector takes the tenant or the user."""

from django.db.models import QuerySet

from apps.accounts.models import User
from apps.tenants.models import Invitation, Membership, Tenant


def tenants_for_user(*, user: User) -> QuerySet[Tenant]:
    return Tenant.objects.filter(memberships__user=user).order_by("slug")


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")


def members_of(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user")


def invitations_of(*, tenant: Tenant) -> QuerySet[Invitation]:
    return Invitation.objects.filter(tenant=tenant).select_related("invited_by")
