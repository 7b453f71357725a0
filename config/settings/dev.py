"""Local development (`make run`): served as in production (gunicorn, whitenoise, DEBUG off; scripts/web.sh),
emails printed to the console. DEBUG=1 turns Django's debug pages on and serves static files straight
from their sources."""

from config.settings.base import *  # noqa: F403
from config.settings.env import env_bool, env_list, env_str, with_local_object_storage

DEBUG = env_bool("DEBUG", False)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

if DEBUG:
    # Edited files show on the next request; nothing to collect.
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True
else:
    # As production: collected (scripts/web.sh runs collectstatic), hashed names, compressed.
    STORAGES = COLLECTED_STATIC_STORAGES  # noqa: F405
# `make run`'s bring-up writes its progress here (scripts/bring_up.py); the console shows it.
BUILD_STATUS_FILE = env_str("GPUCLOUD_BUILD_STATUS_FILE") or str(BASE_DIR / "var" / "build-status.json")  # noqa: F405

# Object storage: the local SeaweedFS of scripts/s3.sh unless OBJECT_STORAGE_* says otherwise.
OBJECT_STORAGE = with_local_object_storage(OBJECT_STORAGE)  # noqa: F405

# The sandbox's logs reader: sandbox/sandbox.sh installs the chart's RBAC as release `gpucloud` in namespace
# `sandbox`, with the logs kubeconfigs' user gpucloud-logs (docs/sandbox.md, "Identities").
LOGS_READER_CLUSTER_ROLE = env_str("LOGS_READER_CLUSTER_ROLE", "sandbox-gpucloud-pod-logs")
LOGS_READER_SUBJECTS = env_list("LOGS_READER_SUBJECTS") or ["User:gpucloud-logs"]
