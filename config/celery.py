import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import task_prerun

from apps.core import heartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("gpucloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Touches HEARTBEAT_FILE every heartbeat.INTERVAL_SECONDS from the worker's main process (the liveness
    probe of the chart's worker; apps/core/heartbeat.py). With the prefork pool the timer is run by the
    consumer's event loop, so the file goes stale when that loop stops going round (hung, or reconnecting
    to the broker), not while tasks run long in the pool's processes."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.entries: list[Any] = []

    def start(self, worker: Any) -> None:
        if not heartbeat.path():
            return
        self.entries = [
            worker.timer.call_after(0.0, heartbeat.beat),  # as soon as the loop runs
            worker.timer.call_repeatedly(heartbeat.INTERVAL_SECONDS, heartbeat.beat),
        ]

    def stop(self, worker: Any) -> None:
        for entry in self.entries:
            entry.cancel()
        self.entries = []


app.steps["worker"].add(WorkerHeartbeat)


@task_prerun.connect
def _bind_task_context(task_id: str | None = None, **_: Any) -> None:
    """Audit events and logs written by a task say so, with the task id as the request id."""
    from apps.core import request_context

    if not getattr(app.conf, "task_always_eager", False):
        request_context.update(
            via="task", request_id=task_id or request_context.new_request_id(), ip=None, token_id=None
        )
