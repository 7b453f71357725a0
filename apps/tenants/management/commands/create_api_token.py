from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.accounts.models import User
from apps.core import request_context
from apps.core.errors import DomainError
from apps.tenants import tokens
from apps.tenants.models import Membership


class Command(BaseCommand):
    help = "Create an API token for a user in a tenant and print it (it is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument(
            "--scopes", required=True, help="Comma-separated, e.g. instances:write,billing:read"
        )
        parser.add_argument("--name", default="cli")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(email__iexact=options["email"]).first()
        if user is None:
            raise CommandError(f"No user with email {options['email']}.")
        membership = (
            Membership.objects.select_related("tenant")
            .filter(user=user, tenant__slug=options["tenant"])
            .first()
        )
        if membership is None:
            raise CommandError(f"{user.email} is not a member of a tenant '{options['tenant']}'.")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        days = options["expires_in_days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        try:
            with request_context.bind(via="command"):
                _token, plaintext = tokens.token_create(
                    user=user,
                    membership=membership,
                    name=options["name"],
                    scopes=scopes,
                    expires_at=expires_at,
                )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(plaintext)
