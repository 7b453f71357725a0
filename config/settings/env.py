"""Typed readers for environment variables, so settings fail loudly on bad values."""

import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"The environment variable {name} is required in this configuration.")
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}.")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value in (None, ""):
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """KEY=VALUE lines of a generated file (blank lines and # comments skipped); empty if it is missing."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip().removeprefix("export "): value.strip() for key, value in pairs}


def local_s3_env_file() -> str:
    """The settings file scripts/s3.sh writes for the local SeaweedFS (0600, never committed)."""
    cache = env_str("GPUCLOUD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gpucloud")
    return os.path.join(env_str("GPUCLOUD_S3_DIR") or os.path.join(cache, "s3"), "settings.env")


def with_local_object_storage(conf: dict[str, Any]) -> dict[str, Any]:
    """OBJECT_STORAGE with the values the environment left empty taken from the local SeaweedFS's file
    (dev and test only; production names its service explicitly)."""
    local = env_file(local_s3_env_file())
    return {
        key: value if value not in (None, "") else local.get(f"OBJECT_STORAGE_{key}", value)
        for key, value in conf.items()
    }
