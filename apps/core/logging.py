"""Log records with the request context, secrets redacted, as JSON lines (production) or plain text (dev).

LOGGING (config/settings/observability.py) puts both filters on the handler, so they see every record,
including those of third-party libraries (botocore, kubernetes, urllib3) that log bodies at DEBUG.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from apps.core import request_context

REDACTED = "[REDACTED]"

_SENSITIVE_NAMES = (
    r"password|passwd|pwd|secret|secret_key|secret_access_key|token|api_?key|client-key-data|private_key|"
    r"authorization|cookie|sessionid|csrftoken|csrfmiddlewaretoken|signature"
)
# A key naming a secret ("STRIPE_SECRET_KEY=", "'password': ", "token: "), not one merely starting like one
# ("token_id=", "password_changed=").
_KEY = r"""(?P<key>["']?[\w-]*(?:""" + _SENSITIVE_NAMES + r""")s?["']?\s*[:=]\s*)"""
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys (kubeconfigs carry them base64-encoded too; see client-key-data below).
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), REDACTED),
    # Our API tokens gpc_<prefix>_<secret>: the prefix is a lookup key, not a secret; keep it for support.
    (re.compile(r"\b(gpc_[a-z0-9]{10}_)[A-Za-z0-9_-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"\bgpc_(?!\w{10}_\[)[A-Za-z0-9_-]{8,}"), "gpc_" + REDACTED),
    # Stripe secret and restricted keys, webhook signing secrets.
    (re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]+"), r"\1_\2_" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_" + REDACTED),
    # Credentials in URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.I), r"\1" + REDACTED + "@"),
    # Authorization headers and their schemes.
    (re.compile(r"\b(Bearer|Basic)\s+(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{6,}", re.I), r"\1 " + REDACTED),
    (re.compile(r"(Stripe-Signature[\"']?\s*[:=]\s*[\"']?)[^\"'\s]+", re.I), r"\1" + REDACTED),
    # key=value, "key": "value", key: value (dict reprs, query strings, YAML, form bodies).
    (
        re.compile(_KEY + r"""(?P<quote>["'])(?!\[REDACTED\])[^"'\n]*(?P=quote)""", re.I),
        r"\g<key>\g<quote>" + REDACTED + r"\g<quote>",
    ),
    (re.compile(_KEY + r"""(?![\["'])[^"'\s,;&}<>]+""", re.I), r"\g<key>" + REDACTED),
    # XML bodies (IAM CreateAccessKey answers <SecretAccessKey>...</SecretAccessKey>).
    (
        re.compile(r"<(?P<tag>[\w:]*(?:Secret|Password|Token)[\w:]*)>[^<]+</(?P=tag)>", re.I),
        r"<\g<tag>>" + REDACTED + r"</\g<tag>>",
    ),
    # AWS-style secret access keys: 40 characters mixing upper case, lower case and digits (a hex digest
    # has no upper case, so hashes and ids are left alone).
    (
        re.compile(
            r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[0-9])"
            r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
        REDACTED,
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Renders the message (and traceback) once, redacted, so no formatter can print the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RequestContextFilter(logging.Filter):
    """Adds the request id, tenant, actor and instance id (apps/core/request_context.py) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = request_context.current()
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or ctx.request_id
        record.tenant = ctx.tenant
        record.actor = ctx.actor
        record.instance_id = ctx.instance_id
        record.via = ctx.via
        return True


# Attributes every LogRecord has; anything else came from `extra=` and is worth keeping.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "tenant",
    "actor",
    "instance_id",
    "via",
    "request",  # Django's request logs: the object itself is not serialisable (path is in the message)
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, tenant, actor,
    instance_id, via, exception, plus any simple `extra=` values."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "tenant", "actor", "instance_id", "via"):
            entry[field] = getattr(record, field, None)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and isinstance(value, str | int | float | bool):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)
