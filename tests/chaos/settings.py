"""Settings of the web, worker and operator subprocesses of the resilience drills (tests/chaos/): the test
settings with real message passing on a queue of the drill's own, so the shared Redis never hands our tasks
to another test run's worker (or `make run`'s), nor theirs to ours."""

import os

from config.settings.test import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_DEFAULT_QUEUE = os.environ["CHAOS_QUEUE"]
# One cache namespace for every process of a drill (the test settings derive it from each pid).
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": os.environ["CHAOS_QUEUE"]}}  # noqa: F405
