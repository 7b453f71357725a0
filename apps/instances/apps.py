from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "apps.instances"
    label = "instances"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.instances import receivers
        from apps.tenants.signals import tenant_suspended

        tenant_suspended.connect(
            receivers.stop_instances_of_suspended_tenant, dispatch_uid="instances-stop-on-tenant-suspended"
        )
