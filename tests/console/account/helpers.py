"""Helpers for the console's account pages tests (apps/console/views/account/): a logged-in browser, the
pages' URLs and their HTML."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.test import Client
from django.urls import reverse

from tests.conftest import Actor

MakeActor = Callable[..., Actor]

# Every account page, by URL name.
PAGES = ["tokens", "members", "quotas", "billing", "audit"]


def browser(actor: Actor) -> Client:
    client = Client()
    client.force_login(actor.user)
    return client


def page_url(name: str, actor: Actor, **kwargs: Any) -> str:
    return reverse(f"console:{name}", kwargs={"tenant_slug": actor.tenant.slug, **kwargs})


def html(response: Any) -> str:
    return response.content.decode()


def has_csrf(response: Any) -> bool:
    return 'name="csrfmiddlewaretoken"' in html(response)
