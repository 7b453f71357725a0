"""Helpers for the catalog, instance and SSH key tests (the fixtures built on them are in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings

from apps.catalog.catalog_seed import seed_catalog
from apps.catalog.models import InstanceType, Region
from apps.instances.models import Instance, frozen_terms

FLEET = Path(settings.BASE_DIR) / "sandbox" / "fleet.yaml"


@dataclass
class Catalog:
    us_east: Region
    eu_west: Region

    def instance_type(self, slug: str) -> InstanceType:
        return InstanceType.objects.select_related("gpu_type").get(slug=slug)


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


def seed() -> Catalog:
    seed_catalog(FLEET)
    return Catalog(us_east=Region.objects.get(slug="us-east-1"), eu_west=Region.objects.get(slug="eu-west-1"))


def ed25519_public_key(comment: str = "ada@laptop") -> str:
    blob = (
        ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    )
    return f"{blob.decode()} {comment}"


def launch_body(**overrides: Any) -> dict[str, Any]:
    """A valid launch of one H100 in us-east-1; a None override drops the field."""
    body: dict[str, Any] = {"instance_type": "gpu-h100x1", "region": "us-east-1", "image": "pytorch"}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}
