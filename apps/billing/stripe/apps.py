from django.apps import AppConfig


class StripeBillingConfig(AppConfig):
    name = "apps.billing.stripe"
    label = "billing_stripe"
    verbose_name = "Billing: Stripe"
    default_auto_field = "django.db.models.BigAutoField"
