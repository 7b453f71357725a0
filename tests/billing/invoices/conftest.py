from __future__ import annotations

import pytest

from apps.catalog.models import GpuType, InstanceType


@pytest.fixture
def instance_types(db):
    """Two instance types, named like the catalog's, for the lines' descriptions."""
    h100 = GpuType.objects.create(
        slug="h100-80gb", model="H100 80GB", memory_gib=80, product_label="NVIDIA-H100-80GB-HBM3"
    )
    a100 = GpuType.objects.create(
        slug="a100-80gb", model="A100 80GB", memory_gib=80, product_label="NVIDIA-A100-SXM4-80GB"
    )
    return {
        "gpu-h100x1": InstanceType.objects.create(
            slug="gpu-h100x1",
            name="1x H100 80GB",
            gpu_type=h100,
            gpu_count=1,
            vcpu=26,
            memory_gib=225,
            price_per_hour="2.4900",
        ),
        "gpu-a100x1": InstanceType.objects.create(
            slug="gpu-a100x1",
            name="1x A100 80GB",
            gpu_type=a100,
            gpu_count=1,
            vcpu=30,
            memory_gib=200,
            price_per_hour="1.2900",
        ),
    }
