"""Settings of the beat and worker subprocesses of tests/core/test_beat_replicas.py: the test settings with
real message passing and one test-only periodic task (tests/support/beat_tasks.py) on a queue of its own."""

import os

from config.settings.test import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
BEAT_TEST_QUEUE = os.environ["BEAT_TEST_QUEUE"]
BEAT_TEST_TICKS_KEY = os.environ["BEAT_TEST_TICKS_KEY"]
CELERY_BEAT_SCHEDULE = {
    "replica-tick": {
        "task": "tests.support.beat_tasks.tick",
        "schedule": float(os.environ["BEAT_TEST_INTERVAL"]),
        "options": {"queue": BEAT_TEST_QUEUE},
    }
}
