from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.billing.invoices import periods, services
from apps.core.errors import DomainError
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Invoice a closed month: one finalized invoice per tenant with usage in it or late rows for an "
        "earlier closed month (or the one --tenant). Idempotent: a finalized invoice is left as it is."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="The month to close, YYYY-MM (UTC).")
        parser.add_argument("--tenant", help="Only this tenant (slug); invoiced even without usage.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            month = periods.parse_month(options["month"])
        except ValueError as exc:
            raise CommandError(f"--month: {exc}") from exc
        tenant = None
        if options.get("tenant"):
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"--tenant: no tenant with slug {options['tenant']!r}.")
        try:
            result = services.month_close(month=month, tenant=tenant)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        invoices = result.invoices
        for invoice in invoices:
            self.stdout.write(
                f"{invoice.number} {invoice.tenant.slug} {invoice.month:%Y-%m} subtotal {invoice.subtotal} "
                f"credits {invoice.credits_applied} total {invoice.total} {invoice.currency}"
            )
        self.stdout.write(f"{len(invoices)} invoice(s) for {month:%Y-%m}.")
        if result.failed:
            # The others are invoiced; running the command again closes these (and leaves the rest as is).
            failed = Tenant.objects.filter(pk__in=list(result.failed)).values_list("pk", "slug")
            for pk, slug in failed:
                self.stderr.write(f"not invoiced: {slug}: {result.failed[pk]}")
            raise CommandError(f"{len(result.failed)} tenant(s) not invoiced; run the command again.")
