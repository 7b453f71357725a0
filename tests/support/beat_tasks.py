"""The test-only periodic task of tests/core/test_beat_replicas.py: it appends the run it was sent for."""

import json
from typing import Any

import redis
from celery import shared_task
from django.conf import settings


@shared_task(bind=True, name="tests.support.beat_tasks.tick")
def tick(self: Any) -> None:
    run = {
        "run_at": self.request.get("gpucloud_beat_run_at"),
        "previous_run": self.request.get("gpucloud_beat_previous_run"),
        "sender": self.request.get("gpucloud_beat_sender"),
    }
    redis.Redis.from_url(settings.CELERY_BROKER_URL).rpush(settings.BEAT_TEST_TICKS_KEY, json.dumps(run))
