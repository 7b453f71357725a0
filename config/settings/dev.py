"""Local development (`make run`): DEBUG on, emails printed to the console."""

from config.settings.base import *  # noqa: F403
from config.settings.env import env_str

DEBUG = True
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
