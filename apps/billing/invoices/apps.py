from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "apps.billing.invoices"
    label = "billing_invoices"
    verbose_name = "Invoices"
    default_auto_field = "django.db.models.BigAutoField"
