"""Work done by a Celery worker is audited as via=task, with the task id as its request id."""

from apps.core import request_context
from config.celery import _bind_task_context, app


def test_worker_tasks_bind_their_own_context(monkeypatch):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    with request_context.bind(via="api", request_id="req-12345678", ip="127.0.0.1"):
        _bind_task_context(task_id="task-abcdef12")
        current = request_context.current()
    assert (current.via, current.request_id, current.ip) == ("task", "task-abcdef12", None)


def test_eager_tasks_keep_the_request_context(monkeypatch):
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    with request_context.bind(via="api", request_id="req-12345678"):
        _bind_task_context(task_id="task-abcdef12")
        assert request_context.current().via == "api"
