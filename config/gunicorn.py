"""Gunicorn's settings (`gunicorn --config=python:config.gunicorn ...`, as the chart and the image run it):
gunicorn's own error log through the same handler as every other log line, JSON and redacted
(config/settings/observability.py, docs/operations.md "Logs"). Gunicorn reads this in its master process
before Django is set up, so the format and level come from the environment the settings read them from:
LOG_FORMAT (json with the production settings, plain otherwise, as there) and LOG_LEVEL (INFO)."""

import os

from config.settings.observability import gunicorn_logging

_production = os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".production")
logconfig_dict = gunicorn_logging(
    log_format=os.environ.get("LOG_FORMAT") or ("json" if _production else "plain"),
    level=os.environ.get("LOG_LEVEL") or "INFO",
)
