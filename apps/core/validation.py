"""Checks shared by every app that names things: a field's error, and the DNS-label names that instances
and volumes take (they become Kubernetes object names)."""

from __future__ import annotations

import re

from apps.core.errors import InvalidInput

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", fields={field: [message]})


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise invalid(
            "name", "Use 1-63 lowercase letters, digits and hyphens, starting and ending alphanumeric."
        )
    return name
