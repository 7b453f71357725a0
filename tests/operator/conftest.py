"""Fixtures shared by the sandbox tests of this directory (a test module's own `tenant` fixture, where it
needs the catalog connected first, takes precedence), and the instances' fixtures these tests launch with
(they lived under tests/instances/ until the operator became an app of its own)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from apps.tenants.roles import Role
from tests.instances.conftest import launch, ssh_key, tenant_owner
from tests.operator.own_nodes import Nodes
from tests.operator.sandbox_support import SandboxTenant

__all__ = ["launch", "ssh_key", "tenant", "tenant_owner"]  # catalog and make_instance: tests/conftest.py


@pytest.fixture
def tenant(
    make_actor: Callable[..., Any], kube_clients: dict[str, client.ApiClient]
) -> Iterator[SandboxTenant]:
    """An owner of a fresh tenant whose us-east-1 namespace is deleted after the test."""
    sandbox_tenant = SandboxTenant(make_actor(Role.OWNER), kube_clients)
    sandbox_tenant.regions.add("us-east-1")
    yield sandbox_tenant
    sandbox_tenant.cleanup()


@pytest.fixture
def own_nodes(kube_clients: dict[str, client.ApiClient]) -> Iterator[Nodes]:
    """Nodes the test makes (`own_nodes.create()`) in us-east-1, deleted after it
    (tests/operator/own_nodes.py)."""
    nodes = Nodes(client.CoreV1Api(kube_clients["us-east-1"]), f"GPUCLOUD-TEST-{uuid.uuid4().hex[:8]}")
    yield nodes
    nodes.cleanup()
