"""Test settings: real PostgreSQL and Redis (started by `make test`), fast hashing, captured email."""

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import REST_FRAMEWORK
from config.settings.database import databases
from config.settings.env import env_bool, env_list, env_str, with_local_object_storage

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# Throttling has its own tests with their own rates; the rest of the suite should not trip over it.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"principal": "100000/min", "anon": "100000/min"},
}
# Likewise the per-address and per-IP limits on sign-up, password reset and resend (every test client is
# 127.0.0.1, and the counters outlive a test); tests/accounts/test_email_limits.py sets its own.
ACCOUNT_EMAIL_MAX_PER_ADDRESS = 100000
ACCOUNT_EMAIL_MAX_PER_IP = 100000

# Unpooled unless DATABASE_POOL=1: tests close and reopen connections at will (a pool would keep them open
# past a DROP DATABASE); tests/core/test_database_pool.py runs servers with the pool.
DATABASES = databases(DATABASE_URL, pooled=env_bool("DATABASE_POOL", False))  # noqa: F405
# One test database per test process, so parallel runs (developers, CI steps) never drop each other's.
DATABASES["default"]["TEST"] = {"NAME": f"test_gpucloud_{os.getpid()}"}
CACHES = {"default": {**CACHES["default"], "KEY_PREFIX": f"gpucloud-test-{os.getpid()}"}}  # noqa: F405

# Object storage: the local SeaweedFS of scripts/s3.sh unless OBJECT_STORAGE_* says otherwise.
OBJECT_STORAGE = with_local_object_storage(OBJECT_STORAGE)  # noqa: F405

# The sandbox's logs reader: sandbox/sandbox.sh installs the chart's RBAC as release `gpucloud` in namespace
# `sandbox`, with the logs kubeconfigs' user gpucloud-logs (docs/sandbox.md, "Identities").
LOGS_READER_CLUSTER_ROLE = env_str("LOGS_READER_CLUSTER_ROLE", "sandbox-gpucloud-pod-logs")
LOGS_READER_SUBJECTS = env_list("LOGS_READER_SUBJECTS") or ["User:gpucloud-logs"]
