import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("gpucloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _bind_task_context(task_id: str | None = None, **_: Any) -> None:
    """Audit events and logs written by a task say so, with the task id as the request id."""
    from apps.core import request_context

    if not getattr(app.conf, "task_always_eager", False):
        request_context.update(
            via="task", request_id=task_id or request_context.new_request_id(), ip=None, token_id=None
        )
