"""Settings shared by every environment. Environment variables override the defaults here."""

from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from config.settings.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env_str("SECRET_KEY", "insecure-dev-only-key-change-me")  # production.py refuses this
DEBUG = False
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.accounts",
    "apps.tenants",
    "apps.audit",
    "apps.catalog",
    "apps.quotas",
    "apps.instances",
    "apps.billing",
    "apps.billing.stripe",
    "apps.billing.invoices",
    "apps.console",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestContextMiddleware",
    "apps.core.middleware.ApiBodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The project runs on PostgreSQL everywhere (quota admission relies on row locks, billing on exclusion
# constraints); `make run` and `make test` start a local server when DATABASE_URL is not set.
DATABASE_URL = env_str("DATABASE_URL") or "postgres://gpucloud:gpucloud@127.0.0.1:5432/gpucloud"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Requests bigger than this are refused with 413 before any parsing.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": "gpucloud",
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a task survives a worker crash: it is acknowledged only once done
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "purge-expired-idempotency-keys": {
        "task": "apps.core.tasks.purge_expired_idempotency_keys",
        "schedule": 3600.0,
    },
}

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gpucloud <no-reply@gpucloud.localhost>")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Absolute base for links in emails (verification, invitations, password reset).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INVITATION_TTL_HOURS = env_int("INVITATION_TTL_HOURS", 7 * 24)
EMAIL_VERIFICATION_TTL_HOURS = env_int("EMAIL_VERIFICATION_TTL_HOURS", 72)
MAX_TENANTS_PER_USER = env_int("MAX_TENANTS_PER_USER", 10)
IDEMPOTENCY_KEY_TTL_HOURS = 24

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: its WWW-Authenticate header turns "not authenticated" into 401, not 403.
        "apps.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.LimitOffsetPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.core.throttling.PrincipalRateThrottle",
        "apps.core.throttling.AnonymousRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "principal": env_str("API_THROTTLE_RATE", "1200/min"),
        "anon": env_str("API_ANON_THROTTLE_RATE", "60/min"),
    },
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.GpucloudAutoSchema",
    "DEFAULT_VERSIONING_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "gpucloud API",
    "DESCRIPTION": (
        "The REST API of gpucloud, a public multi-tenant GPU cloud. Authenticate with "
        "`Authorization: Bearer <token>` (API tokens are bound to one tenant and carry scopes) or with a "
        "console session (cookie plus CSRF token). Every error has the shape "
        '`{"error": {"code": ..., "message": ..., "fields": {...}}}`. Objects of other tenants answer 404.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"InvoiceStatusEnum": "apps.billing.invoices.models.InvoiceStatus"},
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token from the console, the API or `manage.py create_api_token`.",
            },
            "sessionAuth": {
                "type": "apiKey",
                "in": "cookie",
                "name": "sessionid",
                "description": "Console session; unsafe methods also need the X-CSRFToken header.",
            },
        }
    },
    "SECURITY": [{"bearerAuth": []}, {"sessionAuth": []}],
    "AUTHENTICATION_WHITELIST": [],
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "apps.core.logging.RequestContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 10)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Limits every new tenant starts with; staff raise them per tenant in the admin.
DEFAULT_TENANT_QUOTA = {
    "max_gpus": env_int("DEFAULT_QUOTA_MAX_GPUS", 8),
    "max_instances": env_int("DEFAULT_QUOTA_MAX_INSTANCES", 10),
    "max_vcpu": env_int("DEFAULT_QUOTA_MAX_VCPU", 256),
    "max_memory_gib": env_int("DEFAULT_QUOTA_MAX_MEMORY_GIB", 2048),
    "max_volume_gib": env_int("DEFAULT_QUOTA_MAX_VOLUME_GIB", 1000),
}
# Keys for encrypting cluster credentials at rest (Fernet, comma-separated; the first encrypts).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
CELERY_BEAT_SCHEDULE["enforce-instance-timers"] = {
    "task": "apps.instances.tasks.enforce_instance_timers",
    "schedule": 30.0,
}

# Billing: usage is closed in windows of this many seconds; the periodic task catches up this far back.
BILLING_WINDOW_SECONDS = env_int("BILLING_WINDOW_SECONDS", 60)
BILLING_CATCH_UP_HOURS = env_int("BILLING_CATCH_UP_HOURS", 24)
CELERY_BEAT_SCHEDULE["meter-usage"] = {"task": "apps.billing.tasks.meter_all", "schedule": 30.0}
# Wallet and hard limits (docs/billing.md): running instances are stopped when the runway is shorter than
# this; new tenants start with this much promotional credit; budget alerts are checked this often.
BILLING_STOP_GRACE_SECONDS = env_int("BILLING_STOP_GRACE_SECONDS", 10)
BILLING_SIGNUP_CREDIT = env_str("BILLING_SIGNUP_CREDIT", "0")
CELERY_BEAT_SCHEDULE["billing-enforce-limits"] = {
    "task": "apps.billing.tasks.enforce_limits",
    "schedule": 10.0,
}
CELERY_BEAT_SCHEDULE["billing-budget-alerts"] = {
    "task": "apps.billing.tasks.check_budgets",
    "schedule": 300.0,
}

# Invoices: the previous month is closed on the 1st (UTC), after the metering task has caught up.
CELERY_BEAT_SCHEDULE["close-billing-period"] = {
    "task": "apps.billing.invoices.tasks.close_previous_month",
    "schedule": crontab(minute=30, hour=0, day_of_month="1"),
}

# Stripe (apps/billing/stripe, docs/billing.md "Stripe"). Without STRIPE_SECRET_KEY payments are off: the
# product still meters, rates and keeps wallets; the payment endpoints answer 503 stripe_not_configured.
# STRIPE_API_BASE points the SDK elsewhere (stripe-mock: http://127.0.0.1:12111).
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "")
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 10)
STRIPE_CURRENCY = env_str("STRIPE_CURRENCY", "usd")
STRIPE_TOPUP_MIN = env_str("STRIPE_TOPUP_MIN", "10.00")
STRIPE_TOPUP_MAX = env_str("STRIPE_TOPUP_MAX", "10000.00")
# A closed hour is exported once the ledger has settled: window + a few metering runs after the hour ends.
STRIPE_METER_SETTLE_SECONDS = env_int("STRIPE_METER_SETTLE_SECONDS", 300)
STRIPE_METER_LOOKBACK_HOURS = env_int("STRIPE_METER_LOOKBACK_HOURS", 72)
STRIPE_OUTBOX_BACKOFF_BASE_SECONDS = env_int("STRIPE_OUTBOX_BACKOFF_BASE_SECONDS", 30)
STRIPE_OUTBOX_BACKOFF_MAX_SECONDS = env_int("STRIPE_OUTBOX_BACKOFF_MAX_SECONDS", 3600)
# After an invoice payment fails the tenant is past_due (no new launches); after this grace, suspended.
BILLING_PAST_DUE_GRACE_HOURS = env_int("BILLING_PAST_DUE_GRACE_HOURS", 72)
for _name, _task, _every in (
    ("stripe-outbox-fill", "outbox_fill", 300.0),
    ("stripe-outbox-drain", "outbox_drain", 60.0),
    ("stripe-reconcile", "reconcile", 86400.0),
    ("stripe-events-retry", "retry_events", 300.0),
    ("stripe-past-due", "enforce_past_due", 900.0),
):
    CELERY_BEAT_SCHEDULE[_name] = {"task": f"apps.billing.stripe.tasks.{_task}", "schedule": _every}
