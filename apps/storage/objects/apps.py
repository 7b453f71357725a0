from django.apps import AppConfig


class ObjectStorageConfig(AppConfig):
    name = "apps.storage.objects"
    label = "storage_objects"
    verbose_name = "Object storage"
    default_auto_field = "django.db.models.BigAutoField"
