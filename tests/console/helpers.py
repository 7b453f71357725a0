"""Helpers for the console's tenant pages tests: logged-in clients and page URLs; the seeded catalog and
instance rows come from tests/support/factories.py."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from apps.tenants.models import Tenant
from tests.instances.helpers import ed25519_public_key
from tests.support.factories import Catalog, make_instance, seed

__all__ = ["Catalog", "client_for", "ed25519_public_key", "make_instance", "page", "seed"]


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(name: str, tenant: Tenant, *args: Any) -> str:
    return reverse(f"console:{name}", args=[tenant.slug, *args])
