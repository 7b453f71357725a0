from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "apps.instances"
    label = "instances"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.catalog import holdings
        from apps.catalog.signals import region_connected
        from apps.instances import receivers, selectors
        from apps.instances.signals import cluster_needs_settling
        from apps.quotas.usage import register_usage
        from apps.tenants.signals import tenant_closing, tenant_suspended

        # The catalog's availability asks what instances hold through its port, not by importing this app.
        holdings.register(held_by_pool=selectors.held_by_pool)
        register_usage("instances", selectors.quota_usage_of)  # what quotas count (apps/quotas/usage.py)
        tenant_suspended.connect(
            receivers.stop_instances_of_suspended_tenant, dispatch_uid="instances-stop-on-tenant-suspended"
        )
        tenant_closing.connect(
            receivers.terminate_instances_of_closed_tenant,
            dispatch_uid="instances-terminate-on-closing",
        )
        region_connected.connect(
            receivers.start_instances_of_connected_region, dispatch_uid="instances-start-on-region-connected"
        )
        cluster_needs_settling.connect(receivers.settle_cluster, dispatch_uid="instances-settle-cluster")
