"""Seed a demo: a staff admin, a demo tenant with its owner, and an API token. Safe to run again."""

import secrets
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from apps.accounts import scopes, services
from apps.accounts.models import ApiToken, User
from apps.billing.models import CreditKind
from apps.billing.services import credit_grant_create
from apps.core import request_context
from apps.tenants import services as tenant_services
from apps.tenants import tokens
from apps.tenants.models import Membership, Tenant

DEMO_CREDIT = Decimal("100.00")


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password", default=None, help="Password for both demo users (random if omitted)."
        )

    def _user(self, email: str, password: str, *, staff: bool) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            if staff:
                user = User.objects.create_superuser(email=email, password=password)
            else:
                user = User.objects.create_user(email=email, password=password, full_name="Demo Owner")
        else:
            user.set_password(password)
        user.email_verified_at = user.email_verified_at or timezone.now()
        user.save()
        return user

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or secrets.token_urlsafe(12)
        call_command("seed_catalog", stdout=self.stdout)
        with request_context.bind(via="command"), transaction.atomic():
            admin = self._user("admin@gpucloud.localhost", password, staff=True)
            owner = self._user("demo@gpucloud.localhost", password, staff=False)
            tenant = Tenant.objects.filter(slug="demo").first() or tenant_services.tenant_create(
                user=owner, name="Demo", slug="demo"
            )
            membership = Membership.objects.get(tenant=tenant, user=owner)
            # Promotional credit to play with (once: the external id makes a second run a no-op).
            credit_grant_create(
                tenant=tenant,
                kind=CreditKind.PROMOTIONAL,
                amount=DEMO_CREDIT,
                reason="Demo credit",
                external_id=f"seed_demo:{tenant.pk}",
                actor=admin,
            )
            # Each run prints a fresh token; the previous demo tokens stop working.
            previous = ApiToken.objects.filter(tenant=tenant, user=owner, name="demo", revoked_at=None)
            for old in previous:
                services.token_revoke(actor=owner, token=old)
            _token, plaintext = tokens.token_create(
                user=owner, membership=membership, name="demo", scopes=list(scopes.ALL_SCOPES)
            )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "gpucloud demo is ready",
                    f"  console:    http://127.0.0.1:8000/accounts/login/  {owner.email} / {password}",
                    f"  staff:      http://127.0.0.1:8000/staff/           {admin.email} / {password}",
                    "              (staff set up an authenticator app at first log-in: 2FA is mandatory)",
                    "  API docs:   http://127.0.0.1:8000/api/v1/docs/",
                    f"  API token:  {plaintext}",
                    f"  try:        curl -H 'Authorization: Bearer {plaintext}' http://127.0.0.1:8000/api/v1/me",
                    "",
                ]
            )
        )
