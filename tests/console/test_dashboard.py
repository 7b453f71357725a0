"""The tenant dashboard and the shared layout: running instances, GPUs against quota, spend, balance and
runway, recent events, the suspended banner; 404 for strangers, and what each role is shown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.catalog.models import GpuType
from apps.instances import services
from apps.quotas.models import GpuQuota
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.console.helpers import client_for, make_instance, page
from tests.factories import MembershipFactory, TenantFactory

pytestmark = pytest.mark.django_db


def test_the_dashboard_shows_running_instances_gpus_money_and_events(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    owner = make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))
    tenant = owner.tenant
    running = make_instance(
        tenant,
        created_by=owner.user,
        name="trainer",
        instance_type="gpu-h100x2",
        running_since=timezone.now() - timedelta(hours=1),
    )
    make_instance(tenant, created_by=owner.user, name="parked", state="stopped")
    GpuQuota.objects.create(tenant=tenant, gpu_type=GpuType.objects.get(slug="l40s-48gb"), max_gpus=4)
    launched = services.instance_launch(
        actor=owner.user,
        tenant=tenant,
        req=services.LaunchRequest(instance_type="gpu-a100x1", region="us-east-1", image="pytorch"),
    )

    response = client_for(owner.user).get(page("dashboard", tenant))

    assert response.status_code == 200
    assert [i.name for i in response.context["running"]] == ["trainer"]
    html = response.content.decode()
    assert "trainer" in html and "parked" not in html
    rows = {row["gpu_type"]: row for row in response.context["gpu_rows"]}
    # The explicit per-type limit, and the types in use against the tenant's GPU total (default 8).
    assert (rows["l40s-48gb"]["used"], rows["l40s-48gb"]["limit"]) == (0, 4)
    assert (rows["h100-80gb"]["used"], rows["h100-80gb"]["limit"]) == (2, 8)
    assert (rows["a100-80gb"]["used"], rows["a100-80gb"]["limit"]) == (1, 8)
    # Money: 1000.00 of test credit; an hour of a 4.98/h instance is running but not yet in the ledger.
    wallet = response.context["wallet"]
    assert wallet.burn_rate_per_hour > 0
    assert 'id="balance"' in html and "$99" in html  # $995.xx
    assert wallet.runway_seconds is not None and wallet.runway_seconds > 0
    assert "Spend this month" in html and "Runway" in html
    # Recent events: the launch, by whom.
    assert [(e.instance_id, e.name) for e in response.context["events"]][:1] == [(launched.pk, "launch")]
    assert owner.user.email in html
    assert running.pk  # linked from the dashboard
    assert page("instance_detail", tenant, running.pk) in html


def test_the_layout_has_the_tenant_nav_and_a_switcher_of_the_users_tenants_only(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    owner = make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))
    MembershipFactory(user=owner.user, tenant=TenantFactory(name="Beta Labs", slug="beta"), role=Role.VIEWER)
    TenantFactory(name="Hidden Corp", slug="hidden")

    html = client_for(owner.user).get(page("dashboard", owner.tenant)).content.decode()

    for name in (
        "dashboard",
        "instances",
        "launch",
        "ssh_keys",
        "tokens",
        "members",
        "quotas",
        "billing",
        "audit",
    ):
        assert f'href="{page(name, owner.tenant)}"' in html, name
    assert f'href="{reverse("console:dashboard", args=["beta"])}"' in html
    assert "Beta Labs" in html and "Hidden Corp" not in html
    assert 'aria-current="page">Dashboard' in html
    assert "js/htmx.min.js" in html and f'action="{reverse("logout")}"' in html


def test_a_suspended_tenant_shows_a_banner_with_the_reason(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    tenant = TenantFactory(status=TenantStatus.SUSPENDED, status_reason="Unpaid invoice INV-7")
    owner = make_actor(Role.OWNER, tenant=tenant)

    response = client_for(owner.user).get(page("dashboard", tenant))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="tenant-status-banner"' in html
    assert "This tenant is suspended." in html
    assert "Reason: Unpaid invoice INV-7" in html


def test_an_active_tenant_has_no_banner(make_actor: Callable[..., Any], catalog: Any) -> None:
    owner = make_actor(Role.OWNER)
    html = client_for(owner.user).get(page("dashboard", owner.tenant)).content.decode()
    assert "tenant-status-banner" not in html


def test_roles_see_what_they_may(make_actor: Callable[..., Any], catalog: Any) -> None:
    tenant = TenantFactory()
    owner = make_actor(Role.OWNER, tenant=tenant)
    make_instance(tenant, created_by=owner.user, name="trainer")
    viewer = make_actor(Role.VIEWER, tenant=tenant)
    billing = make_actor(Role.BILLING, tenant=tenant)

    seen_by_viewer = client_for(viewer.user).get(page("dashboard", tenant))
    assert "trainer" in seen_by_viewer.content.decode()
    assert "wallet" not in seen_by_viewer.context
    assert "Your role does not show billing." in seen_by_viewer.content.decode()

    seen_by_billing = client_for(billing.user).get(page("dashboard", tenant))
    assert "trainer" not in seen_by_billing.content.decode()
    assert "Your role does not show instances." in seen_by_billing.content.decode()
    assert seen_by_billing.context["wallet"] is not None


def test_another_tenants_dashboard_is_a_404_that_names_nothing(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    stranger = make_actor(Role.OWNER)
    other = TenantFactory(name="Secret Projects Inc", slug="secret-projects")

    for slug in ("secret-projects", "no-such-tenant"):
        response = client_for(stranger.user).get(reverse("console:dashboard", args=[slug]))
        assert response.status_code == 404
        assert "Secret Projects" not in response.content.decode()
    assert other.pk


def test_the_dashboard_needs_a_session(catalog: Any) -> None:
    from django.test import Client

    tenant = TenantFactory()
    response = Client().get(page("dashboard", tenant))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_navigation_offers_only_what_the_role_may_use(make_actor):
    viewer = make_actor("viewer")
    page = viewer.session_client().get(f"/t/{viewer.tenant.slug}/").content.decode()
    assert f"/t/{viewer.tenant.slug}/instances/" in page
    assert f"/t/{viewer.tenant.slug}/launch/" not in page
    assert f"/t/{viewer.tenant.slug}/billing/" not in page
    assert f"/t/{viewer.tenant.slug}/audit/" not in page

    billing = make_actor("billing")
    page = billing.session_client().get(f"/t/{billing.tenant.slug}/billing/").content.decode()
    assert f"/t/{billing.tenant.slug}/billing/" in page
    assert f"/t/{billing.tenant.slug}/launch/" not in page
    assert f"/t/{billing.tenant.slug}/instances/" not in page
