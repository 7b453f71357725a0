"""Fixtures for the API fuzz test: the seeded world, Stripe on stripe-mock and object storage on the local
SeaweedFS (the same fixtures as their own tests), and in-process requests that stay inside the test's
transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from apps.accounts.models import User
from tests.billing.stripe.conftest import stripe_mock_url, stripe_on  # noqa: F401 (fixtures)
from tests.conftest import Actor
from tests.fuzz import world as world_module
from tests.instances.helpers import Catalog, seed
from tests.storage.objects.conftest import object_storage, s3_server  # noqa: F401 (fixtures)


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    """Django closes the connection at the end of each request it serves through WSGI; the test client
    avoids that, and so must the fuzzer's requests, or the first one would end the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(
    db: Any,
    owner: Actor,
    staff_user: User,
    stripe_on: str,  # noqa: F811
    object_storage: dict[str, Any],  # noqa: F811
    in_process_requests: None,
) -> Iterator[world_module.World]:
    catalog: Catalog = seed()
    built = world_module.build(catalog=catalog, owner=owner, staff=staff_user)
    world_module.CURRENT = built
    yield built
    world_module.CURRENT = None
