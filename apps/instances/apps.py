from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "apps.instances"
    label = "instances"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.catalog.signals import region_connected
        from apps.instances import receivers
        from apps.tenants.signals import tenant_suspended

        tenant_suspended.connect(
            receivers.stop_instances_of_suspended_tenant, dispatch_uid="instances-stop-on-tenant-suspended"
        )
        region_connected.connect(
            receivers.start_instances_of_connected_region, dispatch_uid="instances-start-on-region-connected"
        )
