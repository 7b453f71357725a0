from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from apps.core import metrics

        # A Celery worker serves its metrics once its pool is up (docs/operations.md "Metrics").
        worker_ready.connect(metrics.start_worker_exporter, weak=False, dispatch_uid="gpucloud-metrics")
