"""Logging and metrics settings (docs/operations.md "Logs" and "Metrics")."""

import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

LOG_FORMATS = ("json", "plain")


def logging_settings(*, log_format: str, level: str) -> dict[str, Any]:
    """One console handler for every process (web, worker, beat, operator); the filters sit on the handler
    so records of every logger, ours and third-party, get the request context and lose their secrets."""
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}.")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_context": {"()": "apps.core.logging.RequestContextFilter"},
            "redact_secrets": {"()": "apps.core.logging.RedactSecretsFilter"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
            "json": {"()": "apps.core.logging.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["request_context", "redact_secrets"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "INFO"}},
    }


def gunicorn_logging(*, log_format: str, level: str) -> dict[str, Any]:
    """Gunicorn's `logconfig_dict` (config/gunicorn.py): the handler, formatter and filters of
    `logging_settings`, with gunicorn's error log (booting, listening, worker timeouts, bad requests)
    propagating to it instead of writing plain text of its own. A logging configuration turns gunicorn's
    access log on; its lines (INFO) are dropped here: `gpucloud.access` logs each request, naming the URL
    pattern where gunicorn's would write the path, and paths can carry secrets."""
    conf = logging_settings(log_format=log_format, level=level)
    conf["loggers"] = {
        **conf["loggers"],
        "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    }
    return conf


def prepare_multiprocess_metrics() -> None:
    """With PROMETHEUS_MULTIPROC_DIR (gunicorn workers, Celery's pool), every process writes its metrics
    there from the first import of a metric on; the directory must exist by then (settings load first)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
