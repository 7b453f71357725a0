"""Checks of launch parameters that need no database: names, environment, commands, image references."""

from __future__ import annotations

import re
from typing import Any

from apps.core.validation import NAME_RE, check_name, invalid

__all__ = ["NAME_RE", "check_command", "check_env", "check_name", "image_registry", "invalid"]

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Ours, the cluster's and the GPU runtime's; LD_ because the dynamic linker obeys LD_PRELOAD, LD_LIBRARY_PATH
# and LD_AUDIT in every process of the image, the daemons it was built to run included.
RESERVED_ENV_PREFIXES = ("GPUCLOUD_", "KUBERNETES_", "NVIDIA_", "LD_")
MAX_ENV = 64
MAX_ENV_VALUE = 4096
MAX_COMMAND_ITEMS = 64
MAX_COMMAND_ITEM = 4096
# registry/path:tag@digest, as the OCI distribution spec allows (a pragmatic subset).
IMAGE_RE = re.compile(
    r"^(?:(?P<registry>[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def check_env(env: Any) -> dict[str, str]:
    if not isinstance(env, dict):
        raise invalid("env", "Must be an object of NAME: value strings.")
    if len(env) > MAX_ENV:
        raise invalid("env", f"At most {MAX_ENV} variables.")
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            raise invalid("env", f"'{key}' is not a valid variable name.")
        if key.upper().startswith(RESERVED_ENV_PREFIXES):
            raise invalid("env", f"'{key}' uses a reserved prefix ({', '.join(RESERVED_ENV_PREFIXES)}).")
        if not isinstance(value, str):
            raise invalid("env", f"The value of '{key}' must be a string.")
        if len(value) > MAX_ENV_VALUE or "\x00" in value:
            raise invalid(
                "env", f"The value of '{key}' must be at most {MAX_ENV_VALUE} characters, without NUL."
            )
    return dict(env)


def check_command(command: Any) -> list[str]:
    if not isinstance(command, list) or not all(isinstance(item, str) for item in command):
        raise invalid("command", "Must be a list of strings.")
    if len(command) > MAX_COMMAND_ITEMS:
        raise invalid("command", f"At most {MAX_COMMAND_ITEMS} items.")
    if any(len(item) > MAX_COMMAND_ITEM or "\x00" in item for item in command):
        raise invalid("command", f"Each item must be at most {MAX_COMMAND_ITEM} characters, without NUL.")
    return list(command)


def image_registry(reference: str) -> str | None:
    """The registry host of a valid reference ('docker.io' when none is named), or None if invalid."""
    if len(reference) > 255:
        return None
    match = IMAGE_RE.match(reference)
    if not match:
        return None
    registry = match.group("registry")
    # "library/ubuntu" has no registry; "ghcr.io/x/y" does: a first component with a dot, colon or localhost.
    if registry and not ("." in registry or ":" in registry or registry == "localhost"):
        return "docker.io"
    return registry or "docker.io"
