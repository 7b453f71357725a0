from django.apps import AppConfig


class StorageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.storage"
    label = "storage"
    verbose_name = "Storage"

    def ready(self) -> None:
        from apps.quotas.usage import register_usage
        from apps.storage import receivers, selectors
        from apps.tenants.signals import tenant_closing

        register_usage("volumes", selectors.quota_usage_of)  # what quotas count (apps/quotas/usage.py)
        tenant_closing.connect(
            receivers.close_storage_of_closed_tenant, dispatch_uid="storage-tenant-closing"
        )
