"""Checks of volume parameters that need no database: sizes and mount paths."""

from __future__ import annotations

import re
from typing import Any

from apps.core.validation import invalid

MIN_SIZE_GIB = 1
MAX_SIZE_GIB = 65536  # 64 TiB
MAX_VOLUMES_PER_INSTANCE = 16
MAX_MOUNT_PATH = 255
MOUNT_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
# Where a volume would hide the image's own files or the system's: refused, and so is anything below them.
# /etc also holds /etc/gpucloud/ssh, the instance's authorized_keys; /gpucloud the platform's SSH server
# (apps/operator/manifests.py TOOLS_PATH). The home, /home/gpucloud, may be a volume: it then persists.
SYSTEM_PATHS = (
    "/bin",
    "/gpucloud",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lock",
    "/var/run",
)


def check_size(size_gib: Any, field: str = "size_gib") -> int:
    if isinstance(size_gib, bool) or not isinstance(size_gib, int):
        raise invalid(field, "Must be a whole number of GiB.")
    if not MIN_SIZE_GIB <= size_gib <= MAX_SIZE_GIB:
        raise invalid(field, f"Must be between {MIN_SIZE_GIB} and {MAX_SIZE_GIB} GiB.")
    return size_gib


def mount_path_problem(path: Any) -> str | None:
    """Why `path` cannot be a mount path, or None if it can."""
    if not isinstance(path, str) or not path:
        return "Must be an absolute path such as /data."
    if len(path) > MAX_MOUNT_PATH:
        return f"At most {MAX_MOUNT_PATH} characters."
    if path == "/":
        return "Cannot mount over the root directory."
    if not MOUNT_PATH_RE.match(path):
        return "Must be an absolute path of letters, digits, '.', '_' and '-' (no trailing '/')."
    if any(part in (".", "..") for part in path.split("/")):
        return "Must not contain '.' or '..' components."
    for system in SYSTEM_PATHS:
        if path == system or path.startswith(f"{system}/"):
            return f"{system} is a system directory; mount volumes elsewhere (e.g. /data)."
    return None
