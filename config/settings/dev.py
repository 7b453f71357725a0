"""Local development (`make run`): DEBUG on, emails printed to the console."""

from config.settings.base import *  # noqa: F403
from config.settings.env import env_list, env_str, with_local_object_storage

DEBUG = True
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# `make run`'s bring-up writes its progress here (scripts/bring_up.py); the console shows it.
BUILD_STATUS_FILE = env_str("GPUCLOUD_BUILD_STATUS_FILE") or str(BASE_DIR / "var" / "build-status.json")  # noqa: F405

# Object storage: the local SeaweedFS of scripts/s3.sh unless OBJECT_STORAGE_* says otherwise.
OBJECT_STORAGE = with_local_object_storage(OBJECT_STORAGE)  # noqa: F405

# The sandbox's logs reader: sandbox/sandbox.sh installs the chart's RBAC as release `gpucloud` in namespace
# `sandbox`, with the logs kubeconfigs' user gpucloud-logs (docs/sandbox.md, "Identities").
LOGS_READER_CLUSTER_ROLE = env_str("LOGS_READER_CLUSTER_ROLE", "sandbox-gpucloud-pod-logs")
LOGS_READER_SUBJECTS = env_list("LOGS_READER_SUBJECTS") or ["User:gpucloud-logs"]
