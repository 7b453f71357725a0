"""Helpers for the catalog, instance and SSH key tests (the fixtures built on them are in conftest.py). The
catalog and instance rows come from tests/support/factories.py; they are re-exported here for the tests that
import them from this module."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.factories import FLEET, Catalog, instance_row, seed

__all__ = ["FLEET", "Catalog", "ed25519_public_key", "instance_row", "launch_body", "seed"]


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
