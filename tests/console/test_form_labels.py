"""Every console page, rendered for an owner whose tenant has data (and the sign-in pages for a visitor),
names its form controls and images for assistive technology:

- each visible input, select and textarea has a label: a <label for> pointing at its id, an enclosing
  <label> (an implicit label, as valid as an explicit one), or aria-label / aria-labelledby;
- aria-labelledby and aria-describedby point at elements that exist, and ids are unique;
- each button has a name (its text or aria-label);
- each <img> has alt, and each <svg> is either an image with a title (role="img" and <title> or
  aria-labelledby) or hidden (aria-hidden="true").

The pages are found by walking the URL configuration, so a new page is checked the day it is added: a route
with a URL kwarg this file cannot fill fails until KWARGS learns it. Forms are also checked re-rendered with
their field errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.accounts import services as account_services
from apps.billing.models import TagBudget
from apps.quotas import services as quota_services
from apps.storage.models import VolumeAttachment
from apps.tenants import services as tenant_services
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import usage
from tests.conftest import Actor, login_staff
from tests.console.helpers import client_for, cluster_rows, ed25519_public_key, make_instance, seed
from tests.console.html_tree import Node, parse
from tests.factories import UserFactory
from tests.storage.objects.helpers import access_key_row, bucket_row
from tests.support.factories import volume_row

pytestmark = pytest.mark.django_db

CONTROLS = ("input", "select", "textarea")
UNLABELLED_INPUT_TYPES = frozenset({"hidden", "submit", "button", "reset", "image"})
# Namespaces whose pages are the console's (the Django admin has its own templates and tests).
NAMESPACES = ("console", "")


@dataclass
class Data:
    owner: Actor
    staff: Any
    kwargs: dict[str, str]


@pytest.fixture
def data(make_actor: Callable[..., Actor]) -> Data:
    """A tenant with something on every page: instances, a key, a token, a member, an invitation, a quota
    request, ledger rows and audit events."""
    seed()
    owner = make_actor(Role.OWNER)
    tenant = owner.tenant
    running = make_instance(tenant, created_by=owner.user, name="trainer", running_since=timezone.now())
    make_instance(tenant, created_by=owner.user, name="parked", state="stopped")
    key = account_services.ssh_key_create(
        actor=owner.user, tenant=tenant, name="laptop", public_key=ed25519_public_key(), private=False
    )
    member = make_actor(Role.MEMBER, tenant=tenant)
    invitation, _secret = tenant_services.invitation_create(
        actor=owner.user, actor_role=Role.OWNER, tenant=tenant, email="new@example.com", role=Role.MEMBER
    )
    quota_request = quota_services.quota_request_create(
        actor=owner.user, tenant=tenant, resource="gpus", amount=16, reason="a bigger training run"
    )
    usage(tenant, "1.500000", end=timezone.now() - timedelta(hours=1))
    volume = volume_row(
        tenant, region=running.region, name="datasets", size_gib=100, state="in_use", created_by=owner.user
    )
    VolumeAttachment.objects.create(instance=running, volume=volume, mount_path="/mnt/datasets")
    bucket = bucket_row(tenant, name="checkpoints", created_by=owner.user)
    access_key = access_key_row(tenant, name="training", created_by=owner.user)
    cluster = cluster_rows(tenant, created_by=owner.user, name="gang")
    tag_budget = TagBudget.objects.create(tenant=tenant, key="team", value="ml", monthly_amount=100)
    staff = UserFactory(is_staff=True)
    kwargs = {
        "tenant_slug": tenant.slug,
        "instance_id": str(running.pk),
        "ssh_key_id": str(key.pk),
        "token_id": str(owner.token.pk),
        "member_id": str(member.membership.pk),
        "invitation_id": str(invitation.pk),
        "action": "stop",
        "uidb64": urlsafe_base64_encode(force_bytes(owner.user.pk)),
        "token": default_token_generator.make_token(owner.user),
        "staff_tenant_slug": tenant.slug,
        "quota_request_id": str(quota_request.pk),
        "volume_id": str(volume.pk),
        "bucket_name": bucket.name,
        "access_key_id": str(access_key.pk),
        "cluster_id": str(cluster.pk),
        "tag_budget_id": str(tag_budget.pk),
    }
    return Data(owner=owner, staff=staff, kwargs=kwargs)


def routes() -> Iterator[tuple[str, list[str]]]:
    """(url name, kwargs) of every route in the console's namespaces."""

    def walk(patterns: list[Any], namespace: str) -> Iterator[tuple[str, list[str]]]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = entry.namespace or namespace
                if inner in NAMESPACES:
                    yield from walk(entry.url_patterns, inner)
            elif isinstance(entry, URLPattern) and entry.name and namespace in NAMESPACES:
                name = f"{namespace}:{entry.name}" if namespace else entry.name
                yield name, list(entry.pattern.regex.groupindex)

    yield from walk(get_resolver().url_patterns, "")


def fetch_all(data: Data) -> dict[str, str]:
    """The HTML of every page that answers GET, by URL name: console pages as the owner (staff pages as
    staff), the sign-in pages as a visitor."""
    owner, staff, visitor = client_for(data.owner.user), login_staff(Client(), data.staff), Client()
    pages = {}
    for name, kwargs in routes():
        if name in ("healthz", "readyz", "logout"):
            continue
        missing = [k for k in kwargs if k not in data.kwargs]
        assert not missing, f"{name}: add a value for {missing} to the KWARGS of this test's data fixture"
        url = reverse(name, kwargs={k: data.kwargs[k] for k in kwargs})
        if name.startswith("console:staff"):
            clients = {"": staff}
        elif name.startswith("console:"):
            clients = {"": owner}
        else:  # sign-in and account pages: before and after signing in
            clients = {" (visitor)": visitor, " (owner)": owner}
        for who, client in clients.items():
            response = client.get(url, follow=True)
            if response.status_code == 405:  # a POST-only endpoint: its page is the form that posts to it
                continue
            # Some pages answer 400 without their query (a verification link without its token): still pages.
            assert response.status_code in (200, 400), f"{name}{who} {url}: {response.status_code}"
            if "html" in response.get("Content-Type", ""):
                pages[f"{name}{who}"] = response.content.decode()
    return pages


def post_with_errors(data: Data) -> dict[str, str]:
    """Forms re-rendered with their field errors (the markup that points at the error messages)."""
    client = client_for(data.owner.user)
    slug = data.owner.tenant.slug
    posts = {
        "launch": ("console:launch", {"region": "us-east-1", "instance_type": "", "name": "Not Valid!"}),
        "ssh_keys": ("console:ssh_keys", {"name": "", "public_key": "not a key"}),
        "tokens": ("console:tokens", {"name": "", "scopes": [], "expires_at": "soon"}),
        "invite": ("console:invite", {"email": "not-an-email", "role": "member"}),
        "quotas": ("console:quotas", {"resource": "gpus", "amount": "-1", "reason": ""}),
        "budget": ("console:billing_budget", {"monthly_budget": "lots"}),
        "topup": ("console:billing_topup", {"amount": "-5"}),
        "created_token": ("console:tokens", {"name": "ci", "scopes": ["instances:read"]}),
        "volume": ("console:volumes", {"name": "Not Valid!", "region": "us-east-1", "size_gib": "0"}),
        "bucket": ("console:buckets", {"name": "No"}),
        "access_key": ("console:access_keys", {"name": ""}),
        "tag_budget": ("console:tag_budgets", {"key": "Bad Key", "value": "x", "monthly_amount": "0"}),
        "cluster": (
            "console:cluster_create",
            {"region": "us-east-1", "instance_type": "gpu-h100x8", "node_count": "0", "name": "Not Valid!"},
        ),
    }
    pages = {}
    for what, (name, form) in posts.items():
        response = client.post(reverse(name, args=[slug]), form)
        assert response.status_code < 500, what
        pages[f"{name} (POST {what})"] = response.content.decode()
    response = client.post(reverse("console:tenant_new"), {"name": ""})
    assert response.status_code == 400
    pages["console:tenant_new (POST tenant)"] = response.content.decode()
    return pages


# --- the checks ------------------------------------------------------------------------------------------


def problems_of(html: str) -> list[str]:
    root = parse(html)
    nodes = list(root.walk())
    ids: dict[str, int] = {}
    for node in nodes:
        if "id" in node.attrs:
            ids[node.attrs["id"]] = ids.get(node.attrs["id"], 0) + 1
    labelled_by_for = {n.attrs["for"] for n in nodes if n.tag == "label" and n.attrs.get("for") and n.text}
    problems = [f"id {i!r} is used {n} times" for i, n in ids.items() if n > 1]

    def describe(node: Node) -> str:
        return f"<{node.tag} {' '.join(f'{k}={v!r}' for k, v in node.attrs.items())}>"

    for node in nodes:
        for attr in ("aria-labelledby", "aria-describedby"):
            for ref in node.attrs.get(attr, "").split():
                if ref not in ids:
                    problems.append(f"{describe(node)}: {attr} points at no element {ref!r}")
        if node.tag in CONTROLS:
            if node.tag == "input" and node.attrs.get("type", "text") in UNLABELLED_INPUT_TYPES:
                continue
            named = (
                node.attrs.get("aria-label", "").strip()
                or node.attrs.get("aria-labelledby", "").strip()
                or node.attrs.get("id") in labelled_by_for
                or any(a.tag == "label" and a.text for a in node.ancestors())
            )
            if not named:
                problems.append(f"{describe(node)} has no label")
        elif node.tag == "button":
            if not (node.text or node.attrs.get("aria-label", "").strip()):
                problems.append(f"{describe(node)} has no name")
        elif node.tag == "img":
            if "alt" not in node.attrs:
                problems.append(f"{describe(node)} has no alt")
        elif node.tag == "svg":
            hidden = node.attrs.get("aria-hidden") == "true"
            titled = node.attrs.get("aria-labelledby") or any(
                c.tag == "title" and c.text for c in node.children
            )
            if not hidden and not (node.attrs.get("role") == "img" and titled):
                problems.append(f"{describe(node)} is neither an image with a title nor hidden")
    return problems


def test_every_console_page_labels_its_controls_and_images(data: Data) -> None:
    pages = {**fetch_all(data), **post_with_errors(data)}

    # The walk reached the pages that matter (and they had something on them to check).
    for name in (
        "console:dashboard",
        "console:launch",
        "console:instances",
        "console:billing",
        "login (visitor)",
    ):
        assert name in pages, name
    assert "trainer" in pages["console:instances"] and "laptop" in pages["console:ssh_keys"]
    assert "new@example.com" in pages["console:members"]
    assert 'aria-invalid="true"' in pages["console:billing_budget (POST budget)"]
    controls = sum(len([n for n in parse(html).walk() if n.tag in CONTROLS]) for html in pages.values())
    svgs = sum(html.count("<svg") for html in pages.values())
    assert controls > 50 and svgs >= 4

    problems = {name: found for name, html in pages.items() if (found := problems_of(html))}
    assert not problems, "\n".join(f"{name}: {p}" for name, found in problems.items() for p in found)


def test_the_checker_finds_what_it_looks_for() -> None:
    html = """
      <label for="a">Name</label><input id="a">
      <label>Region <select name="r"></select></label>
      <input name="unlabelled"><input type="hidden" name="h"><input aria-label="Search">
      <textarea id="t"></textarea><label for="t"></label>
      <p id="dup"></p><p id="dup"></p><input aria-describedby="gone" aria-label="x">
      <button></button><button aria-label="Close"></button><img src="x.png">
      <svg role="img"><title>Chart</title></svg><svg aria-hidden="true"></svg><svg></svg>
    """
    problems = problems_of(html)
    assert len(problems) == 7, problems
    joined = "\n".join(problems)
    for expected in (
        "<input name='unlabelled'> has no label",
        "<textarea id='t'> has no label",  # an empty label names nothing
        "id 'dup' is used 2 times",
        "points at no element 'gone'",
        "<button > has no name",
        "<img src='x.png'> has no alt",
        "<svg > is neither an image with a title nor hidden",
    ):
        assert expected in joined, expected


def test_polled_regions_are_polite_live_regions(data: Data) -> None:
    """The instances list and the instance's status update themselves; assistive technology hears the
    change (politely) because they sit in a live region that stays while htmx swaps its content."""
    client = client_for(data.owner.user)
    for name, polled_id in (
        ("console:instances", "instance-table"),
        ("console:instance_detail", "instance-status"),
        ("console:clusters", "cluster-table"),
        ("console:cluster_detail", "cluster-status"),
    ):
        kwargs = {"tenant_slug": data.kwargs["tenant_slug"]}
        if name == "console:instance_detail":
            kwargs["instance_id"] = data.kwargs["instance_id"]
        if name == "console:cluster_detail":
            kwargs["cluster_id"] = data.kwargs["cluster_id"]
        root = parse(client.get(reverse(name, kwargs=kwargs)).content.decode())
        polled = root.by_id(polled_id)
        assert "hx-trigger" in polled.attrs, name
        live = [a for a in polled.ancestors() if a.attrs.get("aria-live")]
        assert live and live[0].attrs["aria-live"] == "polite", name
