"""The starter catalog: GPU types and instance types, and regions with capacity read from a fleet file
(sandbox/fleet.yaml describes the simulated fleet `make run` uses)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from apps.catalog.models import GpuType, Image, InstanceType, Region, RegionCapacity

GPU_TYPES = [
    # slug, model, memory GiB, product label, resource
    ("h100-80gb", "H100 80GB HBM3", 80, "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu"),
    ("a100-80gb", "A100 SXM4 80GB", 80, "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu"),
    ("l40s-48gb", "L40S 48GB", 48, "NVIDIA-L40S", "nvidia.com/gpu"),
    ("h100-mig-1g10gb", "H100 MIG 1g.10gb slice", 10, "NVIDIA-H100-80GB-HBM3", "nvidia.com/mig-1g.10gb"),
    # The sandbox's real kubelet nodes (sandbox/fleet.yaml `real: true`): containers really run there.
    ("sandbox-cpu", "Sandbox CPU (real node)", 0, "SANDBOX-CPU", "nvidia.com/gpu"),
]

# slug, gpu type, GPUs, vCPU, memory GiB, disk GiB, price per hour
INSTANCE_TYPES = [
    ("gpu-h100x1", "h100-80gb", 1, 24, 220, 500, "2.4900"),
    ("gpu-h100x2", "h100-80gb", 2, 48, 440, 1000, "4.9800"),
    ("gpu-h100x4", "h100-80gb", 4, 96, 880, 2000, "9.9600"),
    ("gpu-h100x8", "h100-80gb", 8, 192, 1750, 4000, "19.9200"),
    ("gpu-a100x1", "a100-80gb", 1, 30, 240, 500, "1.7900"),
    ("gpu-a100x8", "a100-80gb", 8, 240, 1900, 4000, "14.3200"),
    ("gpu-l40sx1", "l40s-48gb", 1, 14, 120, 250, "0.9900"),
    ("gpu-l40sx4", "l40s-48gb", 4, 60, 480, 1000, "3.9600"),
    ("gpu-h100-mig-1g10gb", "h100-mig-1g10gb", 1, 4, 32, 100, "0.4500"),
    ("sandbox-cpu-1x", "sandbox-cpu", 1, 1, 1, 2, "0.0600"),
    ("cpu-4x", None, 0, 4, 16, 50, "0.1200"),
    ("cpu-16x", None, 0, 16, 64, 100, "0.4800"),
]
# The types that take all of a fleet node's GPUs: the node types of multi-node clusters.
WHOLE_NODE_TYPES = {"gpu-h100x8", "gpu-a100x8", "gpu-l40sx4"}

# slug, name, reference, command (what the image runs when a launch names none; the CUDA and PyTorch images'
# own entrypoints only wrap a shell, so they run the SSH server alone; Jupyter's starts its notebook server,
# which users reach through `ssh -L 8888:localhost:8888`)
IMAGES = [
    ("cuda-12", "CUDA 12.4 base (Ubuntu 22.04)", "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", []),
    ("pytorch", "PyTorch 24.08 (CUDA 12.6)", "nvcr.io/nvidia/pytorch:24.08-py3", []),
    (
        "jupyter",
        "Jupyter PyTorch notebook",
        "quay.io/jupyter/pytorch-notebook:cuda12-python-3.11",
        ["start-notebook.py", "--ServerApp.ip=127.0.0.1"],
    ),
]


def _quantity(value: str) -> int:
    """A Kubernetes quantity in whole units (cpu cores, or GiB for memory)."""
    for suffix, factor in (("Ti", 1024), ("Gi", 1), ("Mi", 1 / 1024)):
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


def _pools_from_fleet(fleet: dict[str, Any]) -> dict[str, dict[str | None, dict[str, int]]]:
    """region -> gpu type slug (None for CPU-only) -> summed gpus, vcpu and memory."""
    by_label_and_resource = {(label, resource): slug for slug, _m, _g, label, resource in GPU_TYPES}
    shapes = fleet["shapes"]
    result: dict[str, dict[str | None, dict[str, int]]] = {}
    for region in fleet["regions"]:
        pools: dict[str | None, dict[str, int]] = defaultdict(lambda: {"gpus": 0, "vcpu": 0, "memory_gib": 0})
        for pool in region["pools"]:
            shape = shapes[pool["shape"]]
            count = int(pool["count"])
            gpu = shape.get("gpu")
            # A MIG node offers its slices (one resource per profile), a whole-GPU node nvidia.com/gpu.
            if gpu and shape.get("mig"):
                offered = {
                    f"nvidia.com/mig-{p}": int(spec["count"]) for p, spec in shape["mig"]["profiles"].items()
                }
            elif gpu:
                offered = {"nvidia.com/gpu": int(gpu["count"])}
            else:
                offered = {}
            slugs = (
                [by_label_and_resource.get((gpu["product"], resource)) for resource in offered] if gpu else []
            )
            for slug, (_resource, per_node) in zip(slugs, offered.items(), strict=True):
                if slug:
                    pools[slug]["gpus"] += per_node * count
            # The node's CPU and memory count in the pool of its (first) GPU type, or the CPU pool.
            target = next((slug for slug in slugs if slug), None)
            pools[target]["vcpu"] += _quantity(shape["allocatable"]["cpu"]) * count
            pools[target]["memory_gib"] += _quantity(shape["allocatable"]["memory"]) * count
        result[region["name"]] = dict(pools)
    return result


@transaction.atomic
def seed_catalog(fleet_path: Path | None) -> list[str]:
    """Create or update the starter catalog; returns the region slugs. Safe to run again."""
    gpu_types = {}
    for slug, model, memory, label, resource in GPU_TYPES:
        gpu_types[slug], _ = GpuType.objects.update_or_create(
            slug=slug,
            defaults={
                "model": model,
                "memory_gib": memory,
                "product_label": label,
                "resource_name": resource,
            },
        )
    for slug, gpu, count, vcpu, memory, disk, price in INSTANCE_TYPES:
        name = f"{count}x {gpu_types[gpu].model}" if gpu else f"{vcpu} vCPU, {memory} GiB"
        InstanceType.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "gpu_type": gpu_types.get(gpu) if gpu else None,
                "gpu_count": count,
                "vcpu": vcpu,
                "memory_gib": memory,
                "ephemeral_disk_gib": disk,
                "price_per_hour": Decimal(price),
                "whole_node": slug in WHOLE_NODE_TYPES,
            },
        )
    regions = []
    if fleet_path is not None:
        fleet = yaml.safe_load(fleet_path.read_text())
        storage = {r["name"]: r.get("storage") or {} for r in fleet["regions"]}
        for position, (region_slug, pools) in enumerate(_pools_from_fleet(fleet).items()):
            region, _ = Region.objects.update_or_create(
                slug=region_slug, defaults={"name": region_slug.upper(), "position": position}
            )
            if storage[region_slug] and not region.storage_class:
                # The class sandbox/sandbox.sh creates and sandbox/provisioner.py serves; a class staff set
                # in the admin is theirs and stays.
                region.storage_class = storage[region_slug]["class"]
                region.storage_access_mode = storage[region_slug].get("access_mode", "ReadWriteOnce")
                region.storage_expandable = bool(storage[region_slug].get("expandable", True))
                region.save(update_fields=["storage_class", "storage_access_mode", "storage_expandable"])
            regions.append(region)
            for gpu_slug, totals in pools.items():
                RegionCapacity.objects.update_or_create(
                    region=region, gpu_type=gpu_types.get(gpu_slug) if gpu_slug else None, defaults=totals
                )
    for slug, name, reference, command in IMAGES:
        image, _ = Image.objects.update_or_create(
            slug=slug, defaults={"name": name, "reference": reference, "command": command}
        )
        image.regions.add(*Region.objects.all())
    return [r.slug for r in regions]
