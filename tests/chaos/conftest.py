"""Fixtures of the resilience drills (docs/resilience.md): the control plane as real processes, tenants whose
namespaces are removed from both sandbox regions afterwards, and the ordering of disruptive drills."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from apps.operator import names
from apps.tenants.roles import Role
from tests.chaos.stack import Stack
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox, delete_namespace
from tests.instances.helpers import Catalog, seed
from tests.operator.sandbox_support import connect


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[Any]) -> None:
    """Drills marked chaos(last=True) (the PostgreSQL restart) run after every other test of the session:
    they break the connections of every process, this one included."""
    last = [item for item in items if (m := item.get_closest_marker("chaos")) and m.kwargs.get("last")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.fixture
def connected(sandbox: Sandbox) -> Catalog:
    catalog = seed()
    connect(catalog.us_east, sandbox)
    connect(catalog.eu_west, sandbox)
    return catalog


@pytest.fixture
def owners(
    connected: Catalog, make_actor: Callable[..., Actor], kube_clients: dict[str, client.ApiClient]
) -> Iterator[Callable[[int], list[Actor]]]:
    """owners(n): n tenant owners with full-scope tokens; their namespaces go from both regions at the end."""
    made: list[Actor] = []

    def make(count: int) -> list[Actor]:
        actors = [make_actor(Role.OWNER) for _ in range(count)]
        made.extend(actors)
        return actors

    yield make
    for actor in made:
        for api in kube_clients.values():
            delete_namespace(api, names.namespace_name(actor.tenant.pk, actor.tenant.slug))


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    control_plane = Stack(tmp_path)
    yield control_plane
    control_plane.stop_all()
