"""Rows for tests, written directly (no admission, no reconcile, no cluster): the catalog seeded from
sandbox/fleet.yaml, instances and volumes. The `catalog` fixture (tests/conftest.py) is `seed()`; users,
tenants and memberships come from tests/factories.py."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.catalog.catalog_seed import seed_catalog
from apps.catalog.models import InstanceType, NodeState, Region, RegionNode
from apps.instances.models import Instance, frozen_terms
from apps.storage.models import Volume

FLEET = Path(settings.BASE_DIR) / "sandbox" / "fleet.yaml"

_names = itertools.count(1)


@dataclass
class Catalog:
    us_east: Region
    eu_west: Region

    def instance_type(self, slug: str) -> InstanceType:
        return InstanceType.objects.select_related("gpu_type").get(slug=slug)


def seed() -> Catalog:
    """The starter catalog of sandbox/fleet.yaml: regions us-east-1 and eu-west-1 (not connected to any
    cluster), GPU and instance types, images, storage classes."""
    seed_catalog(FLEET)
    return Catalog(us_east=Region.objects.get(slug="us-east-1"), eu_west=Region.objects.get(slug="eu-west-1"))


def region_node(region: Region, name: str, block: str = "", zone: str = "", **fields: Any) -> RegionNode:
    """A node as the operator reports it (apps/operator/capacity_nodes.py): an idle, ready 8 x H100 machine
    seen just now, unless `fields` say otherwise (gpu_type=None and gpu_resource="" for a CPU-only one)."""
    h100x8 = InstanceType.objects.get(slug="gpu-h100x8")
    values: dict[str, Any] = {
        "gpu_type_id": h100x8.gpu_type_id,
        "gpu_product": "NVIDIA-H100-80GB-HBM3",
        "gpu_resource": "nvidia.com/gpu",
        "gpus_allocatable": 8,
        "vcpu_allocatable": 200,
        "memory_allocatable_bytes": 1750 * 1024**3,
        "state": NodeState.READY,
        "zone": zone,
        "block": block,
        "observed_at": timezone.now(),
    }
    values.update(fields)
    return RegionNode.objects.create(region=region, name=name, **values)


def instance_row(
    *,
    tenant: Any,
    instance_type: InstanceType,
    region: Region,
    created_by: Any,
    name: str,
    state: str = "running",
    image_reference: str = "nvcr.io/nvidia/pytorch:24.08-py3",
    **fields: Any,
) -> Instance:
    """An instance row written directly (no admission, no reconcile), with the type's resources and price
    frozen on it as a launch would. A running clock given without a billing clock is taken for both, as the
    services keep them for a pod that was Ready as soon as it started."""
    values = {**frozen_terms(instance_type), **fields}  # a test may override what the type froze
    values.setdefault("billing_since", values.get("running_since"))
    values.setdefault("accrued_billed_seconds", values.get("accrued_running_seconds", 0))
    return Instance.objects.create(
        tenant=tenant,
        name=name,
        region=region,
        instance_type=instance_type,
        image_reference=image_reference,
        state=state,
        created_by=created_by,
        **values,
    )


def make_instance(
    tenant: Any,
    *,
    created_by: Any,
    state: str = "running",
    instance_type: str = "gpu-h100x1",
    region: Region | str = "us-east-1",
    name: str | None = None,
    **fields: Any,
) -> Instance:
    """`instance_row` by slugs, with a fresh name unless given (the catalog must be seeded)."""
    return instance_row(
        tenant=tenant,
        name=name or f"made-{next(_names)}",
        region=region if isinstance(region, Region) else Region.objects.get(slug=region),
        instance_type=InstanceType.objects.select_related("gpu_type").get(slug=instance_type),
        state=state,
        created_by=created_by,
        **fields,
    )


def volume_row(
    tenant: Any,
    *,
    region: Region | str = "us-east-1",
    name: str | None = None,
    size_gib: int = 10,
    state: str = "available",
    price_per_gib_hour: Decimal | str = "0.0002",
    **fields: Any,
) -> Volume:
    """A volume row written directly (no funds check, no PVC), ReadWriteOnce unless given."""
    fields.setdefault("access_mode", "ReadWriteOnce")
    return Volume.objects.create(
        tenant=tenant,
        region=region if isinstance(region, Region) else Region.objects.get(slug=region),
        name=name or f"volume-{next(_names)}",
        size_gib=size_gib,
        price_per_gib_hour=price_per_gib_hour,
        state=state,
        **fields,
    )
