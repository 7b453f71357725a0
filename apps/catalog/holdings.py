"""The port through which the catalog asks "what do instances hold in each pool?" (availability, the staff
capacity overview) without importing apps.instances, which sits above it in the layer order. Instances
registers the answer at start-up (apps/instances/apps.py); nothing registered is a configuration error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# (region_id, gpu_type_id or None) -> {"gpus", "vcpu", "memory_gib"} held by every tenant's instances that
# hold compute, narrowed to one region and GPU type when they are given.
HeldByPool = Callable[..., dict[tuple[Any, Any], dict[str, int]]]

_held_by_pool: HeldByPool | None = None


def register(*, held_by_pool: HeldByPool) -> None:
    global _held_by_pool
    _held_by_pool = held_by_pool


def held_by_pool(*, region_id: Any = None, gpu_type_id: Any = None) -> dict[tuple[Any, Any], dict[str, int]]:
    if _held_by_pool is None:
        raise ImproperlyConfigured("Nothing answers what instances hold (apps.instances registers it).")
    return _held_by_pool(region_id=region_id, gpu_type_id=gpu_type_id)
