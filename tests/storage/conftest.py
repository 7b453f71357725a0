"""Fixtures of the volume tests (object storage has its own in tests/storage/objects/).

- `catalog` (tests/conftest.py): the starter catalog from sandbox/fleet.yaml (regions us-east-1 and eu-west-1,
  storage class sandbox-standard, ReadWriteOnce, expandable), not connected to any cluster: volume changes
  complete at once, as they do in a region without one.
- `owner_api`: a `VolumeApi` (tests/storage/volume_helpers.py) of a tenant owner.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.instances.helpers import Catalog
from tests.storage.volume_helpers import VolumeApi


@pytest.fixture
def owner_api(catalog: Catalog, make_actor: Callable[..., Actor]) -> VolumeApi:
    return VolumeApi(make_actor(Role.OWNER))
