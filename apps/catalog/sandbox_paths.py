"""Where a Kubernetes sandbox instance keeps its state, as sandbox/instance.sh derives it.

Several sandboxes run side by side (docs/sandbox.md, "Instances"): `default` for `make run`, `test` for the
test suite, ... Each keeps its state, `sandbox.json` (the regions index) included, in a directory of its
own. `seed_catalog` reads the index of the environment's instance: `default` unless GPUCLOUD_SANDBOX_INSTANCE
names another.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_INSTANCE = "default"  # make run's
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


def checked_instance(name: str) -> str:
    """The name, if sandbox.sh accepts it (it becomes part of a path); else ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"sandbox instance {name!r}: lowercase letters, digits and dashes (at most 40)")
    return name


def environment_instance(default: str = DEFAULT_INSTANCE) -> str:
    """The instance the environment names (GPUCLOUD_SANDBOX_INSTANCE), else `default`."""
    return checked_instance(os.environ.get("GPUCLOUD_SANDBOX_INSTANCE") or default)


def cache_dir() -> Path:
    return Path(os.environ.get("GPUCLOUD_CACHE_DIR") or Path.home() / ".cache" / "gpucloud")


def instance_dir(instance: str) -> Path:
    """The state directory of a named instance: ~/.cache/gpucloud/sandbox for `default`, .../sandbox-<name>
    for any other."""
    name = checked_instance(instance)
    return cache_dir() / ("sandbox" if name == DEFAULT_INSTANCE else f"sandbox-{name}")


def sandbox_dir(default: str = DEFAULT_INSTANCE) -> Path:
    """The state directory of the environment's instance; GPUCLOUD_SANDBOX_DIR moves it (as in sandbox.sh)."""
    explicit = os.environ.get("GPUCLOUD_SANDBOX_DIR")
    return Path(explicit) if explicit else instance_dir(environment_instance(default))


def sandbox_index(default: str = DEFAULT_INSTANCE) -> Path:
    """The regions index (`sandbox.json`) of the environment's instance."""
    return sandbox_dir(default) / "sandbox.json"
