"""Production: refuses to start without its secrets; DEBUG is always off."""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403
from config.settings.database import databases
from config.settings.env import env_bool, env_int, env_list, env_required, env_str
from config.settings.observability import logging_settings

DEBUG = False
SECRET_KEY = env_required("SECRET_KEY")
if SECRET_KEY.startswith("insecure") or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 32 characters.")
DATABASE_URL = env_required("DATABASE_URL")
DATABASES = databases(DATABASE_URL)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
# Every process has SECRET_KEY: a key derived from it would let web read the operator's credentials. Here
# a process reads and writes only the key sets it is given (apps/core/crypto.py).
ENCRYPTION_KEYS_FROM_SECRET_KEY = False
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("The environment variable ALLOWED_HOSTS is required in production.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Static files are collected at build time and served by whitenoise, compressed, with hashed names.
STORAGES = COLLECTED_STATIC_STORAGES  # noqa: F405

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)  # TLS usually ends at the ingress
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)

# One JSON object per line for the log pipeline unless LOG_FORMAT=plain (docs/operations.md "Logs").
LOG_FORMAT = env_str("LOG_FORMAT") or "json"
LOGGING = logging_settings(log_format=LOG_FORMAT, level=LOG_LEVEL or "INFO")  # noqa: F405
