"""The staff area is invisible to everyone but staff: every staff URL, every method, answers the plain 404
page to signed-out visitors, customers and tenant owners alike, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.quotas.models import QuotaRequest
from apps.tenants.models import TenantStatus
from tests.conftest import login_staff
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _staff_urls(slug: str, quota_request_id: Any) -> list[tuple[str, str]]:
    tenant = {"staff_tenant_slug": slug}
    return [
        ("get", reverse("console:staff_tenants")),
        ("get", reverse("console:staff_tenant", kwargs=tenant)),
        ("get", reverse("console:staff_tenant_suspend", kwargs=tenant)),
        ("post", reverse("console:staff_tenant_suspend", kwargs=tenant)),
        ("get", reverse("console:staff_tenant_reactivate", kwargs=tenant)),
        ("post", reverse("console:staff_tenant_reactivate", kwargs=tenant)),
        ("get", reverse("console:staff_tenant_close", kwargs=tenant)),
        ("post", reverse("console:staff_tenant_close", kwargs=tenant)),
        ("post", reverse("console:staff_tenant_credit", kwargs=tenant)),
        ("get", reverse("console:staff_tenant_credit", kwargs=tenant)),  # POST-only: still 404, not 405
        ("post", reverse("console:staff_tenant_quota", kwargs=tenant)),
        ("get", reverse("console:staff_quota_requests")),
        (
            "post",
            reverse("console:staff_quota_request_decide", kwargs={"quota_request_id": quota_request_id}),
        ),
        ("get", reverse("console:staff_instances")),
    ]


@pytest.fixture
def world() -> dict[str, Any]:
    owner = MembershipFactory(role="owner")
    request = QuotaRequest.objects.create(
        tenant=owner.tenant, requested_by=owner.user, resource="gpus", amount=64, reason="more please"
    )
    return {"owner": owner, "request": request}


def _clients(owner_user: Any) -> dict[str, Client]:
    customer = Client()
    customer.force_login(UserFactory())
    tenant_owner = Client()
    tenant_owner.force_login(owner_user)
    inactive_staff = Client()
    login_staff(inactive_staff, UserFactory(is_staff=True, is_active=False))
    return {"anonymous": Client(), "customer": customer, "owner": tenant_owner, "inactive": inactive_staff}


def test_every_staff_url_is_a_404_for_everyone_but_staff(world):
    owner, request = world["owner"], world["request"]
    audit_before = AuditEvent.objects.count()
    body = {"reason": "x", "amount": "10", "kind": "paid", "decision": "approve", "max_gpus": "1000"}
    for who, client in _clients(owner.user).items():
        for method, url in _staff_urls(owner.tenant.slug, request.pk):
            response = getattr(client, method)(url, body if method == "post" else None)
            assert response.status_code == 404, (who, method, url, response.status_code)
            assert "Page not found" in response.content.decode(), (who, url)
            if who != "owner":  # the owner's own switcher names it; the 404 page itself never does
                assert owner.tenant.name not in response.content.decode()
    owner.tenant.refresh_from_db()
    request.refresh_from_db()
    assert owner.tenant.status == TenantStatus.ACTIVE and request.status == "pending"
    assert AuditEvent.objects.count() == audit_before


def test_staff_reach_every_page(world, staff_user):
    owner = world["owner"]
    client = login_staff(Client(), staff_user)
    for method, url in _staff_urls(owner.tenant.slug, world["request"].pk):
        if method == "get" and not url.endswith(("/credit/", "/quota/")):
            assert client.get(url).status_code == 200, url


def test_unknown_tenant_or_request_is_a_404_for_staff(staff_user):
    client = login_staff(Client(), staff_user)
    assert (
        client.get(reverse("console:staff_tenant", kwargs={"staff_tenant_slug": "nope"})).status_code == 404
    )
    missing = "00000000-0000-0000-0000-000000000000"
    url = reverse("console:staff_quota_request_decide", kwargs={"quota_request_id": missing})
    assert client.post(url, {"decision": "approve"}).status_code == 404


def test_the_user_menu_links_staff_to_the_staff_area(world, staff_user):
    staff_page = login_staff(Client(), staff_user).get(reverse("console:home")).content.decode()
    assert f'href="{reverse("console:staff_tenants")}"' in staff_page
    customer = Client()
    customer.force_login(world["owner"].user)
    assert reverse("console:staff_tenants") not in customer.get(reverse("console:home")).content.decode()


def test_the_staff_navigation_links_every_section(world, staff_user):
    html = login_staff(Client(), staff_user).get(reverse("console:staff_tenants")).content.decode()
    nav = html[html.index('aria-label="Staff"') :]
    nav = nav[: nav.index("</nav>")]
    for name in ("staff_tenants", "staff_quota_requests", "staff_instances", "staff_capacity"):
        assert f'href="{reverse(f"console:{name}")}"' in nav, name
    assert f'href="{reverse("admin:index")}"' in nav
    assert 'aria-current="page">Tenants' in nav
