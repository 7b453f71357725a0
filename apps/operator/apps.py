from django.apps import AppConfig


class OperatorConfig(AppConfig):
    name = "apps.operator"
    label = "operator"
    verbose_name = "Kubernetes operator"

    def ready(self) -> None:
        from apps.instances import logs
        from apps.instances.signals import instance_changed
        from apps.operator import pod_logs, receivers
        from apps.quotas.signals import quota_changed
        from apps.storage.signals import volume_bound, volume_changed

        # Instances and storage announce their changes; the cluster follows them here.
        instance_changed.connect(receivers.reconcile_changed_instance, dispatch_uid="operator-instance")
        volume_changed.connect(receivers.reconcile_changed_volume, dispatch_uid="operator-volume")
        volume_bound.connect(receivers.reconcile_instances_of_bound_volume, dispatch_uid="operator-bound")
        quota_changed.connect(receivers.apply_namespaces_of_changed_quota, dispatch_uid="operator-quota")
        # Instances ask for pod logs (the console, the API) through their port (apps/instances/logs.py).
        logs.register(pod_logs.pod_log)
