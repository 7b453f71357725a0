"""factory_boy factories shared by the whole suite."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone

from apps.accounts import scopes, token_secrets
from apps.accounts.models import ApiToken, User
from apps.tenants.models import Membership, Tenant
from apps.tenants.roles import Role

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    email_verified_at = factory.LazyFunction(timezone.now)
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @classmethod
    def _after_postgeneration(cls, instance: User, create: bool, results: Any = None) -> None:
        if create:
            instance.save()


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")

    @factory.post_generation
    def credit(obj: Tenant, create: bool, extracted: Any, **kwargs: Any) -> None:
        """Prepaid credit (default 1000.00), so that tests can launch instances past the billing hard limit.
        Billing tests pass credit=0 for an empty wallet."""
        if not create:
            return
        amount = Decimal("1000.00") if extracted is None else Decimal(str(extracted))
        if amount > 0:
            from apps.billing.models import CreditGrant

            CreditGrant.objects.create(tenant=obj, kind="promotional", amount=amount, reason="test credit")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.OWNER


def make_token(
    *, user: User, tenant: Tenant, token_scopes: list[str] | tuple[str, ...] = scopes.ALL_SCOPES, **extra: Any
) -> tuple[ApiToken, str]:
    """A token saved directly (bypassing the service's role checks) and its plaintext secret."""
    secret = token_secrets.generate()
    token = ApiToken.objects.create(
        user=user,
        tenant=tenant,
        name=extra.pop("name", "test"),
        prefix=secret.prefix,
        secret_hash=secret.digest,
        scopes=list(token_scopes),
        **extra,
    )
    return token, secret.plaintext
