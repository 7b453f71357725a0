from django.apps import AppConfig


class StripeBillingConfig(AppConfig):
    name = "apps.billing.stripe"
    label = "billing_stripe"
    verbose_name = "Billing: Stripe"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from apps.billing.invoices.signals import invoice_finalized
        from apps.billing.models import PriceVersion
        from apps.billing.stripe import collection, receivers

        # The close announces what it finalized; collecting it is ours (Stripe calls happen in a task).
        invoice_finalized.connect(collection.on_invoice_finalized, dispatch_uid="billing-stripe-collect")
        post_save.connect(
            receivers.price_version_saved, sender=PriceVersion, dispatch_uid="billing-stripe-price-version"
        )
