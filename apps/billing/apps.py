from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.billing import limits, receivers
        from apps.core import funds
        from apps.tenants.signals import tenant_created

        # The apps below billing ask through this port (apps/core/funds.py) instead of importing billing.
        funds.register(require_funds=limits.require_funds, funds_exhausted=limits.funds_exhausted)
        tenant_created.connect(
            receivers.signup_credit_of_created_tenant, dispatch_uid="billing-tenant-created"
        )
