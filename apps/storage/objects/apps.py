from django.apps import AppConfig


class ObjectStorageConfig(AppConfig):
    name = "apps.storage.objects"
    label = "storage_objects"
    verbose_name = "Object storage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.core import funds
        from apps.quotas.usage import register_measure
        from apps.storage.objects import access
        from apps.tenants.signals import tenant_status_changed

        # Keys are suspended and restored with the tenant's status and funds (apps/storage/objects/access.py);
        # the lower apps announce those changes instead of importing this one.
        funds.funds_changed.connect(access.on_funds_changed, dispatch_uid="storage-objects-funds")
        tenant_status_changed.connect(access.on_tenant_status_changed, dispatch_uid="storage-objects-status")
        register_measure("object_storage_gib", access.used_gib)
