"""Helpers for the console's tenant pages tests: logged-in clients, the seeded catalog, instance rows."""

from __future__ import annotations

import itertools
from typing import Any

from django.test import Client
from django.urls import reverse

from apps.catalog.models import InstanceType, Region
from apps.instances.models import Instance
from apps.tenants.models import Tenant
from tests.instances.helpers import Catalog, ed25519_public_key, instance_row, seed

__all__ = ["Catalog", "client_for", "ed25519_public_key", "make_instance", "page", "seed"]

_names = itertools.count(1)


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(name: str, tenant: Tenant, *args: Any) -> str:
    return reverse(f"console:{name}", args=[tenant.slug, *args])


def make_instance(
    tenant: Tenant,
    *,
    created_by: Any,
    state: str = "running",
    instance_type: str = "gpu-h100x1",
    region: str = "us-east-1",
    name: str | None = None,
    **fields: Any,
) -> Instance:
    """An instance row written directly (no admission), in any state."""
    itype = InstanceType.objects.select_related("gpu_type").get(slug=instance_type)
    return instance_row(
        tenant=tenant,
        name=name or f"made-{next(_names)}",
        region=Region.objects.get(slug=region),
        instance_type=itype,
        state=state,
        created_by=created_by,
        **fields,
    )
