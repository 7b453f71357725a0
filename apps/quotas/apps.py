from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "apps.quotas"
    label = "quotas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.quotas import receivers
        from apps.tenants.signals import tenant_created

        tenant_created.connect(
            receivers.default_quota_of_created_tenant, dispatch_uid="quotas-tenant-created"
        )
