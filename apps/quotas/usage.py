"""What a tenant holds right now, counted from the resources themselves (never a counter that could drift).

The apps that own the resources count them: quotas sits below instances and storage in the layer order, so
they register their counts here at start-up (their AppConfig.ready) instead of quotas importing them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass
class Usage:
    instances: int = 0
    gpus: int = 0
    vcpu: int = 0
    memory_gib: int = 0
    volume_gib: int = 0
    # (gpu_type_id, region_id) -> GPUs held
    gpus_by_type_region: dict[tuple[Any, Any], int] = field(default_factory=dict)

    def gpus_of_type(self, gpu_type_id: Any, region_id: Any = None) -> int:
        return sum(
            n for (t, r), n in self.gpus_by_type_region.items() if t == gpu_type_id and region_id in (None, r)
        )


# Who counts which fields of Usage: instances count instances, GPUs, vCPU and memory; storage the volume GiB.
# Each contributor returns {field: value} for a tenant.
_CONTRIBUTORS: dict[str, Callable[[Any], dict[str, Any]]] = {}


def register_usage(name: str, contributor: Callable[[Any], dict[str, Any]]) -> None:
    _CONTRIBUTORS[name] = contributor


def usage_of(tenant: Any, *, counted_by: Collection[str] | None = None) -> Usage:
    """What the tenant holds. `counted_by`: only these contributors ("instances", "volumes"), for an
    admission that needs only their fields (the others stay 0)."""
    if not _CONTRIBUTORS:
        # Counting nothing would admit everything: a configuration error, never free capacity.
        raise ImproperlyConfigured("No usage is registered (apps.instances and apps.storage register it).")
    usage = Usage()
    for name, contribute in _CONTRIBUTORS.items():
        if counted_by is not None and name not in counted_by:
            continue
        for name, value in contribute(tenant).items():
            setattr(usage, name, value)
    return usage


# Usage that an app above quotas measures itself, by resource: storage registers "object_storage_gib" (the
# started GiB its buckets held at the last usage sample) in its AppConfig.ready, so quotas never imports it.
_MEASURES: dict[str, Callable[[Any], int]] = {}


def register_measure(resource: str, measure: Callable[[Any], int]) -> None:
    _MEASURES[resource] = measure


def measured(resource: str, tenant: Any) -> int:
    measure = _MEASURES.get(resource)
    if measure is None:
        raise LookupError(f"No usage measure is registered for {resource}.")
    return measure(tenant)
