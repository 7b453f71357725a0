"""Hostile form posts and query strings against every page outside the API (console, staff console,
accounts, printable invoices): a 400 page naming the problem, never a 500, and nothing written.

The pages come from the URL configuration, so a page is covered the day it is added. Posts are sent with a
signed-in session (the tenant's owner; staff pages with a verified staff session), so without the limits
they would reach the view.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from tests.conftest import Actor, login_staff
from tests.core import routes

pytestmark = pytest.mark.django_db

_PROBES = ("/healthz", "/readyz", "/metrics")  # not pages
# URL kwargs of pages that do not name an object of the tenant.
_PAGE_KWARGS = {"action": "stop", "uidb64": "MQ", "token": "set-password"}
PAGES = [
    template
    for template, _, _ in routes._walk(get_resolver().url_patterns, "/", "")
    if not template.startswith(("/api/", "/admin/")) and template not in _PROBES
]
_PARAM = re.compile(r"<(?:[^>:]+:)?(\w+)>")


@dataclass
class World:
    values: dict[str, Any]
    owner: Client
    staff: Client

    def url(self, template: str) -> str:
        return _PARAM.sub(lambda m: str(self.values[m.group(1)]), template)

    def client_for(self, template: str) -> Client:
        return self.staff if template.startswith("/staff/") else self.owner


@pytest.fixture
def world(owner: Actor, staff_user: User) -> World:
    objects = routes.World(tenant=owner.tenant, owner=owner.user)
    values = {name: factory(objects) for name, factory in routes.KWARG_FACTORIES.items()}
    owner_client = Client()
    owner_client.force_login(owner.user)
    return World(
        values={**values, **_PAGE_KWARGS}, owner=owner_client, staff=login_staff(Client(), staff_user)
    )


def post_everywhere(world: World, *, needle: str, query: str = "", status: int = 400, **post: Any) -> None:
    """POSTs to every page; fails naming every page that did not answer the 400 page saying `needle`, or
    that wrote to the database."""
    failures = []
    for template in PAGES:
        url = world.url(template) + (f"?{query}" if query else "")
        audit_before = AuditEvent.objects.count()
        with CaptureQueriesContext(connection) as queries:
            response = world.client_for(template).post(url, **post)
        text = html.unescape(response.content.decode(errors="replace"))
        if response.status_code != status:
            failures.append(f"{template}: status {response.status_code}, expected {status}")
        elif not response["Content-Type"].startswith("text/html") or needle not in text:
            failures.append(f"{template}: the page does not say {needle!r}")
        writes = [
            q["sql"][:100] for q in queries.captured_queries if q["sql"][:6] in ("INSERT", "UPDATE", "DELETE")
        ]
        if writes or AuditEvent.objects.count() != audit_before:
            failures.append(f"{template}: wrote {writes}")
    assert not failures, "\n".join(failures)


def _form(body: str) -> dict[str, Any]:
    return {"data": body, "content_type": "application/x-www-form-urlencoded"}


HOSTILE_FORMS = {
    # class: (the post, what the page must say)
    "too-many-fields": (_form("&".join(f"f{i}=1" for i in range(300))), "300 form fields"),
    "overlong-value": (_form("name=" + "x" * 70_000), "70000 characters"),
    "invalid-utf8": (_form("name=%ff%fe"), "not valid UTF-8"),
    "bad-percent-encoding": (_form("name=%zz"), "invalid percent-encoding"),
    "control-character": (_form("name=a%00b"), "control characters"),
    # Multipart bodies (Django's test client's default): the same limits on the values, Django's count.
    "multipart-overlong-value": ({"data": {"name": "x" * 70_000}}, "70000 characters"),
    "multipart-control-character": ({"data": {"name": "a\x00b"}}, "control characters"),
    "multipart-too-many-fields": ({"data": {f"f{i}": "1" for i in range(300)}}, "could not be read"),
}


def test_the_walk_finds_the_pages() -> None:
    assert {"/t/<slug:tenant_slug>/ssh-keys/", "/staff/tenants/<slug:staff_tenant_slug>/suspend/"} <= set(
        PAGES
    )
    assert "/accounts/signup/" in PAGES


@pytest.mark.parametrize("case", list(HOSTILE_FORMS))
def test_hostile_form_posts_are_a_400_page_everywhere(world: World, case: str) -> None:
    post, needle = HOSTILE_FORMS[case]
    post_everywhere(world, needle=needle, **post)


HOSTILE_QUERIES = {
    "too-many-parameters": ("&".join(f"p{i}=1" for i in range(65)), "65 query parameters"),
    "overlong-query": ("q=" + "a" * 5000, "5002 bytes"),
    "bad-percent-encoding": ("q=%zz", "invalid percent-encoding"),
    "invalid-utf8": ("q=%ff", "not valid UTF-8"),
}


@pytest.mark.parametrize("case", list(HOSTILE_QUERIES))
def test_hostile_query_strings_are_a_400_page_everywhere(world: World, case: str) -> None:
    query, needle = HOSTILE_QUERIES[case]
    post_everywhere(
        world, needle=needle, query=query, data="name=x", content_type="application/x-www-form-urlencoded"
    )


def test_an_overlong_header_is_a_431_page(world: World) -> None:
    response = world.owner.get(world.url("/t/<slug:tenant_slug>/"), HTTP_REFERER="https://x/" + "a" * 9000)
    assert response.status_code == 431
    assert "Referer header has 9010 characters" in response.content.decode()
