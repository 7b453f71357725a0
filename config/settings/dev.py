"""Local development (`make run`): DEBUG on, emails printed to the console."""

from config.settings.base import *  # noqa: F403
from config.settings.env import env_str, with_local_object_storage

DEBUG = True
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")

# Object storage: the local SeaweedFS of scripts/s3.sh unless OBJECT_STORAGE_* says otherwise.
OBJECT_STORAGE = with_local_object_storage(OBJECT_STORAGE)  # noqa: F405
