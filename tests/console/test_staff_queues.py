"""Staff quota requests (pending first; approve and deny through quota_request_decide, audited) and the
instances of every tenant (filters by state, region and tenant; paginated; constant query count)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.instances.models import InstanceEvent
from apps.quotas.models import QuotaRequest, TenantQuota
from apps.tenants.models import Tenant
from tests.conftest import login_staff
from tests.console.helpers import make_instance, seed
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_user: Any) -> Client:
    return login_staff(Client(), staff_user)


def html(response: Any) -> str:
    return response.content.decode()


def owner_of(slug: str) -> Any:
    return MembershipFactory(role="owner", tenant__slug=slug, tenant__name=f"{slug.title()} Co")


def ask(
    membership: Any, *, resource: str = "gpus", amount: int = 64, status: str = "pending", age: int = 0
) -> Any:
    return QuotaRequest.objects.create(
        tenant=membership.tenant,
        requested_by=membership.user,
        resource=resource,
        amount=amount,
        reason=f"{resource} for training",
        status=status,
        created_at=timezone.now() - timedelta(hours=age),
    )


# --- quota requests --------------------------------------------------------------------------------------


def test_quota_requests_list_pending_first_oldest_first(staff):
    acme, beta = owner_of("acme"), owner_of("beta")
    decided = ask(acme, resource="vcpu", status="approved", age=1)
    newer = ask(acme, age=2)
    older = ask(beta, resource="instances", age=30)
    denied_long_ago = ask(beta, resource="memory_gib", status="denied", age=50)
    page = html(staff.get(reverse("console:staff_quota_requests")))
    order = re.findall(r'id="qr-([0-9a-f-]+)"', page)
    assert order == [str(r.pk) for r in (older, newer, decided, denied_long_ago)]
    assert page.count('name="decision" value="approve"') == 2  # only pending ones can be decided
    assert "Beta Co" in page and "instances for training" in page

    only_pending = html(staff.get(reverse("console:staff_quota_requests"), {"status": "pending"}))
    assert re.findall(r'id="qr-([0-9a-f-]+)"', only_pending) == [str(older.pk), str(newer.pk)]
    bad = staff.get(reverse("console:staff_quota_requests"), {"status": "maybe"})
    assert bad.status_code == 400 and "Not one of the choices." in html(bad)


def test_no_quota_requests_says_so(staff):
    assert "No quota requests yet." in html(staff.get(reverse("console:staff_quota_requests")))


def decide_url(request: QuotaRequest) -> str:
    return reverse("console:staff_quota_request_decide", kwargs={"quota_request_id": request.pk})


def test_approving_raises_the_limit_and_is_audited(staff, staff_user):
    request = ask(owner_of("acme"), amount=48)
    response = staff.post(decide_url(request), {"decision": "approve", "note": "Welcome aboard"})
    assert response.status_code == 302 and response["Location"] == reverse("console:staff_quota_requests")
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_note) == (
        "approved",
        staff_user,
        "Welcome aboard",
    )
    assert TenantQuota.objects.get(tenant=request.tenant).max_gpus == 48
    assert AuditEvent.objects.filter(
        tenant=request.tenant, action="quota_request.approve", actor_user=staff_user
    ).exists()
    page = html(staff.get(reverse("console:staff_quota_requests")))
    assert "Approved the request of acme: gpus to 48." in page and f"approved by {staff_user.email}" in page


def test_denying_keeps_the_limit_and_a_second_decision_is_refused(staff, staff_user):
    request = ask(owner_of("acme"), amount=48)
    assert staff.post(decide_url(request), {"decision": "deny", "note": "Not yet"}).status_code == 302
    request.refresh_from_db()
    assert request.status == "denied"
    assert not TenantQuota.objects.filter(tenant=request.tenant, max_gpus=48).exists()
    assert AuditEvent.objects.filter(
        tenant=request.tenant, action="quota_request.deny", actor_user=staff_user
    ).exists()

    again = staff.post(decide_url(request), {"decision": "approve"}, follow=True)
    assert again.status_code == 200 and "This request is already denied." in html(again)
    request.refresh_from_db()
    assert request.status == "denied"
    assert not TenantQuota.objects.filter(tenant=request.tenant, max_gpus=48).exists()


def test_a_decision_must_be_approve_or_deny(staff):
    request = ask(owner_of("acme"))
    for decision in ("", "maybe"):
        page = html(staff.post(decide_url(request), {"decision": decision}, follow=True))
        assert "acme: gpus to 64:" in page
    request.refresh_from_db()
    assert request.status == "pending"


# --- instances -------------------------------------------------------------------------------------------


@pytest.fixture
def fleet() -> dict[str, Any]:
    seed()
    acme, beta = owner_of("acme"), owner_of("beta")
    made = {
        "acme-run": make_instance(acme.tenant, created_by=acme.user, name="acme-run", state="running"),
        "acme-eu": make_instance(
            acme.tenant, created_by=acme.user, name="acme-eu", state="stopped", region="eu-west-1"
        ),
        "acme-gone": make_instance(acme.tenant, created_by=acme.user, name="acme-gone", state="terminated"),
        "beta-run": make_instance(
            beta.tenant, created_by=beta.user, name="beta-run", state="running", instance_type="gpu-a100x1"
        ),
    }
    return made


def names(response: Any) -> set[str]:
    assert response.status_code == 200
    return set(re.findall(r'<th scope="row">([\w-]+)<br>', html(response)))


def test_instances_of_every_tenant_with_filters(staff, fleet):
    url = reverse("console:staff_instances")
    assert names(staff.get(url)) == {"acme-run", "acme-eu", "beta-run"}  # terminated hidden by default
    assert names(staff.get(url, {"state": "all"})) == {"acme-run", "acme-eu", "acme-gone", "beta-run"}
    assert names(staff.get(url, {"state": "running"})) == {"acme-run", "beta-run"}
    assert names(staff.get(url, {"region": "eu-west-1"})) == {"acme-eu"}
    assert names(staff.get(url, {"tenant": "beta"})) == {"beta-run"}
    assert names(staff.get(url, {"tenant": "acme", "state": "terminated"})) == {"acme-gone"}
    assert "No instances match these filters." in html(staff.get(url, {"tenant": "nobody"}))
    page = html(staff.get(url, {"tenant": "beta"}))
    assert "Beta Co" in page and "us-east-1" in page and "gpu-a100x1" in page and "state-running" in page
    for bad in ({"state": "exploded"}, {"region": "mars-1"}):
        response = staff.get(url, bad)
        assert response.status_code == 400 and "Not one of the choices." in html(response)


def test_since_is_when_the_instance_entered_its_state(staff, fleet):
    instance = fleet["beta-run"]
    entered = timezone.now().replace(microsecond=0) - timedelta(hours=5)
    InstanceEvent.objects.create(instance=instance, kind="observation", name="pod_ready", to_state="running")
    InstanceEvent.objects.filter(instance=instance).update(created_at=entered)
    InstanceEvent.objects.create(
        instance=instance,
        kind="action",
        name="launch",
        to_state="pending",
        created_at=entered - timedelta(hours=1),
    )
    page = html(staff.get(reverse("console:staff_instances"), {"tenant": "beta"}))
    assert f'datetime="{entered.isoformat()}"' in page


def test_instances_are_paginated_and_cost_constant_queries(staff):
    seed()
    url = reverse("console:staff_instances")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff.get(url).status_code == 200
        return len(ctx.captured_queries)

    tenants: list[Tenant] = []
    for n in range(3):
        m = owner_of(f"few-{n}")
        tenants.append(m.tenant)
        make_instance(m.tenant, created_by=m.user, name=f"few-{n}")
    few = queries()
    for n in range(27):
        m = owner_of(f"many-{n}")
        for k in range(2):
            make_instance(
                m.tenant, created_by=m.user, name=f"many-{n}-{k}", region=("us-east-1", "eu-west-1")[k]
            )
    assert queries() == few
    first = html(staff.get(url))
    assert first.count('id="instance-') == 50 and "Page 1 of 2 (57 instances)" in first
    second = html(staff.get(url, {"page": "2"}))
    assert second.count('id="instance-') == 7


def test_quota_requests_cost_constant_queries(staff):
    url = reverse("console:staff_quota_requests")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff.get(url).status_code == 200
        return len(ctx.captured_queries)

    for n in range(3):
        ask(owner_of(f"few-{n}"))
    few = queries()
    for n in range(27):
        m = owner_of(f"many-{n}")
        ask(m)
        ask(m, resource="vcpu", status="approved")
    assert queries() == few
