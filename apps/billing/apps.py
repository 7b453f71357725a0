from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"
    label = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.billing import bucket_metering, limits, receivers
        from apps.core import funds
        from apps.instances.signals import instance_state_changed
        from apps.storage.objects.signals import buckets_sampled
        from apps.tenants.signals import tenant_created

        # The apps below billing ask through this port (apps/core/funds.py) instead of importing billing.
        funds.register(require_funds=limits.require_funds, funds_exhausted=limits.funds_exhausted)
        # Billing owns every writer of the usage ledger: instances and object storage announce, it meters.
        instance_state_changed.connect(
            receivers.meter_instance_whose_billing_changed, dispatch_uid="billing-meter"
        )
        buckets_sampled.connect(bucket_metering.meter_sampled_buckets, dispatch_uid="billing-buckets")
        tenant_created.connect(
            receivers.signup_credit_of_created_tenant, dispatch_uid="billing-tenant-created"
        )
