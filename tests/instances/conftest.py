"""Shared fixtures for the catalog, instance and SSH key tests (issue 4).

- `tenant_owner`: an owner of a fresh tenant, with a full-scope token.
- `ssh_key`: a shared ed25519 key of that tenant.
- `launch`: POST a launch for an actor with a valid default body, overridable per field.

`catalog` and `make_instance` (instance rows written directly, in any state) are in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.response import Response

from apps.accounts import services as account_services
from apps.accounts.models import SshKey
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.instances.helpers import Catalog, ed25519_public_key, launch_body, seed

__all__ = ["Catalog", "ed25519_public_key", "launch_body", "seed"]


@pytest.fixture
def tenant_owner(make_actor: Callable[..., Actor]) -> Actor:
    return make_actor(Role.OWNER)


@pytest.fixture
def ssh_key(tenant_owner: Actor) -> SshKey:
    return account_services.ssh_key_create(
        actor=tenant_owner.user, tenant=tenant_owner.tenant, name="laptop", public_key=ed25519_public_key()
    )


@pytest.fixture
def launch(catalog: Catalog) -> Callable[..., Response]:
    def do(actor: Actor, headers: dict[str, str] | None = None, **overrides: Any) -> Response:
        return actor.token_client().post(
            actor.url("/instances"), launch_body(**overrides), format="json", headers=headers
        )

    return do
