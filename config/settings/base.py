"""Settings shared by every environment. Environment variables override the defaults here."""

from decimal import Decimal
from pathlib import Path
from typing import Any

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.settings.database import databases
from config.settings.env import env_bool, env_int, env_list, env_str
from config.settings.observability import logging_settings, prepare_multiprocess_metrics

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
    "django_prometheus",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",  # single-use backup codes
    "django_htmx",
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
    "apps.storage",
    "apps.storage.objects",
    "apps.operator",
    "apps.console",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first and last: times the whole stack
    "apps.core.middleware.RequestContextMiddleware",
    "apps.core.middleware.AccessLogMiddleware",  # inside the request context: its line carries the ids
    "apps.core.middleware.ApiBodySizeLimitMiddleware",
    "apps.core.request_limits.RequestLimitsMiddleware",  # before anything reads headers, cookies or forms
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django_htmx.middleware.HtmxMiddleware",  # request.htmx: the console's partial responses
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.core.middleware.ActorContextMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "apps.accounts.middleware.TwoFactorMiddleware",  # staff reach nothing before their second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
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
# constraints); `make run` and `make test` start a local server when DATABASE_URL is not set. Connections
# are pooled per process and bounded (config/settings/database.py, docs/operations.md).
DATABASE_URL = env_str("DATABASE_URL") or "postgres://gpucloud:gpucloud@127.0.0.1:5432/gpucloud"
DATABASES = databases(DATABASE_URL)
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
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "var" / "staticfiles")  # where collectstatic writes
STATICFILES_DIRS = [BASE_DIR / "static"]
# How production (and `make run`) serve static files: collected once, named by their hashes, compressed,
# served by whitenoise. The test settings keep Django's default storage (nothing collected).
COLLECTED_STATIC_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Requests bigger than this are refused with 413 before any parsing.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# What a request may hold (docs/api.md "Limits"); beyond, 400 with the error envelope (431 for a header),
# before anything is written. JSON bodies: apps/core/parsers.py; query strings, form bodies and headers:
# apps/core/request_limits.py.
REQUEST_JSON_MAX_DEPTH = env_int("REQUEST_JSON_MAX_DEPTH", 32)
REQUEST_JSON_MAX_KEYS_PER_OBJECT = env_int("REQUEST_JSON_MAX_KEYS_PER_OBJECT", 256)
REQUEST_JSON_MAX_ITEMS_PER_ARRAY = env_int("REQUEST_JSON_MAX_ITEMS_PER_ARRAY", 1000)
REQUEST_JSON_MAX_ENTRIES = env_int("REQUEST_JSON_MAX_ENTRIES", 10000)  # keys and array items in all
REQUEST_JSON_MAX_NUMBER_LENGTH = env_int("REQUEST_JSON_MAX_NUMBER_LENGTH", 40)  # characters of a literal
REQUEST_MAX_STRING_LENGTH = env_int("REQUEST_MAX_STRING_LENGTH", 65536)  # JSON strings and form values
REQUEST_QUERY_MAX_LENGTH = env_int("REQUEST_QUERY_MAX_LENGTH", 4096)
REQUEST_QUERY_MAX_PARAMS = env_int("REQUEST_QUERY_MAX_PARAMS", 64)
REQUEST_QUERY_MAX_VALUE_LENGTH = env_int("REQUEST_QUERY_MAX_VALUE_LENGTH", 1024)
REQUEST_FORM_MAX_FIELDS = env_int("REQUEST_FORM_MAX_FIELDS", 256)
DATA_UPLOAD_MAX_NUMBER_FIELDS = REQUEST_FORM_MAX_FIELDS  # Django's own count, for multipart bodies too
REQUEST_HEADER_MAX_LENGTH = env_int("REQUEST_HEADER_MAX_LENGTH", 8192)

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
# Several beat processes may run: one sends (holding a lease in Redis), the rest wait (apps/core/beat.py).
CELERY_BEAT_SCHEDULER = "apps.core.beat:LeaderScheduler"
BEAT_LEASE_SECONDS = env_int("BEAT_LEASE_SECONDS", 30)
BEAT_KEY_PREFIX = env_str("BEAT_KEY_PREFIX", "gpucloud:beat")
# Several operators may run: per region, a standby takes over at most this long after the leader is gone
# (apps/operator/leader.py, docs/operator.md "Leader election").
OPERATOR_LEASE_SECONDS = env_int("OPERATOR_LEASE_SECONDS", 30)
# Connections each Kubernetes client keeps for reuse. An operator leading a region holds one long watch per
# kind it caches (10) while its pod, change and resync workers (4 + 4 + 8) and the threads that send a
# Service and Secret alongside a pod (8, concurrently.py) make requests: the client's default (5 per CPU:
# 10 here) dropped a connection after most requests and opened a new TLS one for the next ("Connection
# pool is full" in the cold start's log).
KUBE_CLIENT_POOL_SIZE = env_int("KUBE_CLIENT_POOL_SIZE", 40)
# The leader reconciles a change as it commits (LISTEN/NOTIFY); the worker's task runs this much later, as
# the fallback for a moment without a listening leader (docs/operator.md "The launch path").
RECONCILE_FALLBACK_SECONDS = env_int("RECONCILE_FALLBACK_SECONDS", 5)
# A fallback that finds its change not acted on yet while an operator leads the region waits again, this
# many times at most, each twice as long (10, 20, 40 s): the leader is behind or its resync will have it.
RECONCILE_FALLBACK_WAITS = env_int("RECONCILE_FALLBACK_WAITS", 3)
# Requests of one web process that may long-poll an instance's state at once (each holds a server thread and
# a LISTEN connection, not a pool connection); more are refused with 503 (apps/instances/waiting.py).
INSTANCE_WAIT_MAX_WAITERS = env_int("INSTANCE_WAIT_MAX_WAITERS", 2)
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
        "apps.tenants.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.LimitOffsetPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "apps.core.filters.FilterBackend",  # django-filter's, refusing empty non-text filters
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
    "DEFAULT_SCHEMA_CLASS": "apps.tenants.api.schema.TenantAutoSchema",
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
    "ENUM_NAME_OVERRIDES": {
        "InvoiceStatusEnum": "apps.billing.invoices.models.InvoiceStatus",
        "InstanceLogReasonEnum": "apps.instances.api.logs.REASONS",
        "ClusterStateEnum": "apps.instances.api.cluster_serializers.CLUSTER_STATES",
        "InstanceStateEnum": "apps.instances.api.cluster_serializers.INSTANCE_STATES",
    },
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
# json (one object per line; production's default) or plain (dev); see docs/operations.md "Logs".
LOG_FORMAT = env_str("LOG_FORMAT") or "plain"
LOGGING = logging_settings(log_format=LOG_FORMAT, level=LOG_LEVEL or "INFO")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # workers log through LOGGING too (JSON, redacted)

# Metrics (apps/core/metrics.py, docs/operations.md "Metrics"). /metrics answers requests from these
# networks (never through a proxy) or bearing METRICS_TOKEN, and 404 otherwise.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])
# The worker and the operator serve their own metrics on this address and port (0: not at all).
METRICS_BIND_ADDRESS = env_str("METRICS_BIND_ADDRESS", "127.0.0.1")
METRICS_WORKER_PORT = env_int("METRICS_WORKER_PORT", 9101)
METRICS_OPERATOR_PORT = env_int("METRICS_OPERATOR_PORT", 9102)
prepare_multiprocess_metrics()

# How many reverse proxies (ingress, load balancer) in front of web append to X-Forwarded-For. 0: the
# header is ignored and the client is REMOTE_ADDR; N: the client is the Nth address from the right of the
# header (apps.core.middleware.client_ip: log-in rate limits, the anonymous API throttle, audit). Set the real
# number: more lets clients forge their address, fewer makes every client one proxy's address.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
if TRUSTED_PROXY_HOPS < 0:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_HOPS must be 0 or more, got {TRUSTED_PROXY_HOPS}.")

LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 10)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)
# Sign-up, password reset and verification resend each send an email: at most this many per address and per
# client IP within the window, each action counted on its own (apps/accounts/address_limits.py).
ACCOUNT_EMAIL_MAX_PER_ADDRESS = env_int("ACCOUNT_EMAIL_MAX_PER_ADDRESS", 5)
ACCOUNT_EMAIL_MAX_PER_IP = env_int("ACCOUNT_EMAIL_MAX_PER_IP", 20)
ACCOUNT_EMAIL_WINDOW_SECONDS = env_int("ACCOUNT_EMAIL_WINDOW_SECONDS", 3600)
# The name authenticator apps show next to the account (two-factor set-up, apps/accounts/two_factor.py).
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "gpucloud")

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
    "max_object_storage_gib": env_int("DEFAULT_QUOTA_MAX_OBJECT_STORAGE_GIB", 1000),
}
# Keys for encrypting cluster credentials at rest (Fernet, comma-separated; the first encrypts), one set per
# kind of credential so each process holds only what its job needs (apps/core/crypto.py): the regions'
# operator kubeconfigs (operator and worker), their logs kubeconfigs (web), and the tenants' object storage
# presign secrets (web and worker). Without a set, a key derived from SECRET_KEY stands in, except in
# production (config/settings/production.py).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
LOGS_ENCRYPTION_KEYS = env_list("LOGS_ENCRYPTION_KEYS")
STORAGE_ENCRYPTION_KEYS = env_list("STORAGE_ENCRYPTION_KEYS")
ENCRYPTION_KEYS_FROM_SECRET_KEY = True
# What the operator binds in every tenant namespace so the logs kubeconfigs' identity can read pod logs
# there and nowhere else (a RoleBinding to this ClusterRole; docs/operator-objects.md). Subjects are
# `User:<name>` or `ServiceAccount:<namespace>:<name>`; empty role: no binding (and no pod logs).
LOGS_READER_CLUSTER_ROLE = env_str("LOGS_READER_CLUSTER_ROLE", "")
# The image the instance pod's init container copies the platform's SSH server from (images/sshd/,
# docs/operator-objects.md "The instance pod"): every region's nodes must be able to pull it. The default
# is the name the sandbox's local registry serves; set a pinned reference of your registry in production.
INSTANCE_TOOLS_IMAGE = env_str("GPUCLOUD_INSTANCE_TOOLS_IMAGE", "gpucloud/instance-tools:sandbox")
LOGS_READER_SUBJECTS = env_list("LOGS_READER_SUBJECTS")
CELERY_BEAT_SCHEDULE["enforce-instance-timers"] = {
    "task": "apps.instances.tasks.enforce_instance_timers",
    "schedule": 30.0,
}
# An instance whose pod has not turned Ready this long after entering provisioning or starting fails with
# reason not_ready (its pod deleted, billing stopped); the timer sweep above checks it (docs/instances.md).
INSTANCE_READY_TIMEOUT_SECONDS = env_int("INSTANCE_READY_TIMEOUT_SECONDS", 600)
# An instance whose node has not been Ready this long (its kubelet says NotReady, or stopped reporting) is
# moved: billing stops at the node's last sign of life, its pod is removed and made again on a ready node
# (docs/networking.md "When a zone goes down"). Shorter would move instances on every network blip.
INSTANCE_NODE_LOST_AFTER_SECONDS = env_int("INSTANCE_NODE_LOST_AFTER_SECONDS", 60)
# An instance in a transitional state (pending, provisioning, starting, stopping, terminating) for longer
# than this counts in the gpucloud_instances_stuck gauge (docs/operations.md "Alerts").
INSTANCE_STUCK_AFTER_SECONDS = env_int("INSTANCE_STUCK_AFTER_SECONDS", 900)

# Billing (docs/billing.md "Metering"): a ledger row ends where billing stops, the price changes or the UTC
# month ends, and otherwise at the checkpoint (every this many seconds, aligned to the epoch; a divisor of
# 3600, so no row crosses an hour); the periodic task catches up this far back, this many resources a chunk.
BILLING_CHECKPOINT_SECONDS = env_int("BILLING_CHECKPOINT_SECONDS", 3600)
BILLING_CATCH_UP_HOURS = env_int("BILLING_CATCH_UP_HOURS", 24)
BILLING_METERING_CHUNK = env_int("BILLING_METERING_CHUNK", 1000)
# The month close's one read of the month (billing/invoices/aggregation.py) runs with this work_mem, so its
# grouping stays a hash in memory at a month of 100,000 instances instead of a sort spilled to disk; the
# session's own value comes back after it.
BILLING_CLOSE_WORK_MEM = env_str("BILLING_CLOSE_WORK_MEM", "256MB")
CELERY_BEAT_SCHEDULE["meter-usage"] = {"task": "apps.billing.tasks.meter_all", "schedule": 30.0}
# Wallet and hard limits (docs/billing.md): running instances are stopped when the runway is shorter than
# this; new tenants start with this much promotional credit; budget alerts are checked this often.
BILLING_STOP_GRACE_SECONDS = env_int("BILLING_STOP_GRACE_SECONDS", 10)
# A launch, start or restart must leave this many minutes of runway at the burn rate including the instance.
BILLING_LAUNCH_RUNWAY_MINUTES = env_int("BILLING_LAUNCH_RUNWAY_MINUTES", 10)
BILLING_SIGNUP_CREDIT = env_str("BILLING_SIGNUP_CREDIT", "0")
CELERY_BEAT_SCHEDULE["billing-enforce-limits"] = {
    "task": "apps.billing.tasks.enforce_limits",
    "schedule": 10.0,
}
CELERY_BEAT_SCHEDULE["billing-budget-alerts"] = {
    "task": "apps.billing.tasks.check_budgets",
    "schedule": 300.0,
}
# Wallet snapshots (docs/billing.md "Wallet snapshots"): the wallet read at admission sums only the ledger
# rows after a tenant's snapshot. Its cutoff trails now by the lag (more than metering's delay, so rows
# normally land after it); a row may be committed up to the margin after its created_at (a longer
# transaction could be missed); the refresh runs this often, over chunks of tenants per transaction.
BILLING_SNAPSHOT_LAG_SECONDS = env_int("BILLING_SNAPSHOT_LAG_SECONDS", 900)
BILLING_SNAPSHOT_MARGIN_SECONDS = env_int("BILLING_SNAPSHOT_MARGIN_SECONDS", 300)
BILLING_SNAPSHOT_REFRESH_SECONDS = env_int("BILLING_SNAPSHOT_REFRESH_SECONDS", 300)
BILLING_SNAPSHOT_CHUNK = env_int("BILLING_SNAPSHOT_CHUNK", 200)
# A snapshot carries on from the previous one, and starts from the beginning again after this many hours.
BILLING_SNAPSHOT_REBUILD_HOURS = env_int("BILLING_SNAPSHOT_REBUILD_HOURS", 24)
CELERY_BEAT_SCHEDULE["billing-wallet-snapshots"] = {
    "task": "apps.billing.tasks.refresh_wallet_snapshots",
    "schedule": float(BILLING_SNAPSHOT_REFRESH_SECONDS),
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
    ("stripe-send-invoices", "send_invoices", 300.0),
):
    CELERY_BEAT_SCHEDULE[_name] = {"task": f"apps.billing.stripe.tasks.{_task}", "schedule": _every}

# Volumes (apps/storage, docs/storage.md "Volumes"): the price of one GiB for one hour, frozen on each
# volume when it is created; a volume is billed size x this per hour until it is deleted.
VOLUME_PRICE_PER_GIB_HOUR = Decimal(env_str("VOLUME_PRICE_PER_GIB_HOUR") or "0.0002")

# The status file of `make run`'s background bring-up (apps/core/build_status.py): the console's banner, the
# message of a launch waiting for its region, object storage's "not ready yet". None: nothing builds here.
BUILD_STATUS_FILE = env_str("GPUCLOUD_BUILD_STATUS_FILE")

# Object storage (apps/storage/objects, docs/storage.md "Object storage"): an S3-compatible service whose
# admin identity creates tenants' buckets, IAM users and access keys. Empty ENDPOINT_URL: object storage is
# off and its endpoints answer 503 object_storage_not_configured. dev.py and test.py fall back to the local
# SeaweedFS that scripts/s3.sh runs.
OBJECT_STORAGE: dict[str, Any] = {
    "ENDPOINT_URL": env_str("OBJECT_STORAGE_ENDPOINT_URL", ""),
    "REGION": env_str("OBJECT_STORAGE_REGION", "us-east-1"),
    "ACCESS_KEY_ID": env_str("OBJECT_STORAGE_ACCESS_KEY_ID", ""),
    "SECRET_ACCESS_KEY": env_str("OBJECT_STORAGE_SECRET_ACCESS_KEY", ""),
    # Where the IAM API answers (AWS: https://iam.amazonaws.com; SeaweedFS: the S3 endpoint itself).
    "IAM_ENDPOINT_URL": env_str("OBJECT_STORAGE_IAM_ENDPOINT_URL", ""),
    # The host presigned URLs name (they are signed for it); defaults to ENDPOINT_URL.
    "PUBLIC_ENDPOINT_URL": env_str("OBJECT_STORAGE_PUBLIC_ENDPOINT_URL", ""),
    "ADDRESSING_STYLE": env_str("OBJECT_STORAGE_ADDRESSING_STYLE", "path"),
    # Physical bucket names are "<BUCKET_PREFIX>-<8 characters per tenant>-<name>".
    "BUCKET_PREFIX": env_str("OBJECT_STORAGE_BUCKET_PREFIX", "gpc"),
    "TIMEOUT_SECONDS": env_int("OBJECT_STORAGE_TIMEOUT_SECONDS", 10),
}
OBJECT_STORAGE_MAX_BUCKETS_PER_TENANT = env_int("OBJECT_STORAGE_MAX_BUCKETS_PER_TENANT", 20)
# AWS IAM allows two access keys per user (one user per tenant): set 2 there.
OBJECT_STORAGE_MAX_ACCESS_KEYS_PER_TENANT = env_int("OBJECT_STORAGE_MAX_ACCESS_KEYS_PER_TENANT", 10)
OBJECT_STORAGE_PRESIGN_MAX_SECONDS = 7 * 24 * 3600  # what SigV4 allows
OBJECT_STORAGE_PRESIGN_MAX_BYTES = 5 * 1024**3  # the largest single PUT S3 accepts
# Bytes stored are sampled this often and billed per started GiB at this price per hour (4 places, like
# every price in the ledger).
OBJECT_STORAGE_SAMPLE_SECONDS = env_int("OBJECT_STORAGE_SAMPLE_SECONDS", 600)
OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal(env_str("OBJECT_STORAGE_PRICE_PER_GIB_HOUR") or "0.0001")
CELERY_BEAT_SCHEDULE["object-storage-sample"] = {
    "task": "apps.storage.objects.tasks.sample_buckets",
    "schedule": float(OBJECT_STORAGE_SAMPLE_SECONDS),
}
# How often tenants' storage keys are checked against their status, funds and byte quota (suspended or
# restored, writes blocked or unblocked); docs/storage.md "Funds, suspension and the byte quota".
OBJECT_STORAGE_ACCESS_CHECK_SECONDS = env_int("OBJECT_STORAGE_ACCESS_CHECK_SECONDS", 60)
CELERY_BEAT_SCHEDULE["object-storage-access"] = {
    "task": "apps.storage.objects.tasks.enforce_access",
    "schedule": float(OBJECT_STORAGE_ACCESS_CHECK_SECONDS),
}
# A closed tenant's buckets are kept (unbilled, unreachable with its revoked keys) this many days after the
# close, then deleted with their objects by the hourly sweep, which also finishes any close whose storage
# task did not (apps/storage/closing.py, docs/storage.md "Closing a tenant").
OBJECT_STORAGE_CLOSED_RETENTION_DAYS = env_int("OBJECT_STORAGE_CLOSED_RETENTION_DAYS", 30)
CELERY_BEAT_SCHEDULE["storage-sweep-closed-tenants"] = {
    "task": "apps.storage.tasks.sweep_closed_tenants",
    "schedule": 3600.0,
}
