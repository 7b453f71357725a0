"""Staff tenants pages: the list and one tenant's page show figures that match the data (members, running
instances, GPUs held, spend this month and balance from the ledger), filter and search, cost a constant
number of queries, and suspend, reactivate, close, grant credit and set quota limits through audited
services, with the services' errors shown on the forms."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.audit.models import AuditEvent
from apps.billing.models import CreditGrant
from apps.billing.selectors import month_start, wallet_of
from apps.instances.models import Instance
from apps.quotas.models import TenantQuota
from apps.quotas.services import quota_for
from apps.tenants.models import Tenant, TenantStatus
from tests.billing.wallet_helpers import minute_aligned, usage
from tests.conftest import login_staff
from tests.console.helpers import make_instance, seed
from tests.factories import MembershipFactory, TenantFactory, UserFactory, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(staff_user: Any) -> Client:
    return login_staff(Client(), staff_user)


def html(response: Any) -> str:
    return response.content.decode()


def row_of(page: str, slug: str) -> str:
    start = page.index(f'id="tenant-{slug}"')
    return page[start : page.index("</tr>", start)]


def cell(row: str, name: str) -> str:
    match = re.search(rf'class="{name}">([^<]*)<', row)
    assert match, name
    return match.group(1).strip()


def this_month_end() -> Any:
    """A minute boundary whose one-minute ledger row starts inside this month."""
    now = timezone.now()
    return max(minute_aligned(now), month_start(now) + timedelta(minutes=1))


def busy_tenant(**fields: Any) -> Tenant:
    """Owner plus two members; two running instances of one GPU and one provisioning of four (which holds
    GPUs but is not running), a stopped one (holding nothing); credit 100.00; ledger rows of 12.50 and
    2.25 this month and 5.00 last month."""
    seed_once()
    owner = MembershipFactory(
        role="owner", user=UserFactory(email=f"boss-{fields.get('slug', 'x')}@acme.test")
    )
    tenant = owner.tenant
    if fields:
        Tenant.objects.filter(pk=tenant.pk).update(**fields)
        tenant.refresh_from_db()
    CreditGrant.objects.filter(tenant=tenant).update(amount=Decimal("100.00"))
    MembershipFactory.create_batch(2, tenant=tenant, role="member")
    by = owner.user
    make_instance(tenant, created_by=by, state="running", instance_type="gpu-h100x1")
    make_instance(tenant, created_by=by, state="running", instance_type="gpu-h100x1", region="eu-west-1")
    make_instance(tenant, created_by=by, state="provisioning", instance_type="gpu-h100x4")
    make_instance(tenant, created_by=by, state="stopped", instance_type="gpu-h100x2")
    end = this_month_end()
    usage(tenant, "12.50", end=end)
    usage(tenant, "2.25", end=end)
    usage(tenant, "5.00", end=month_start(timezone.now()) - timedelta(days=1))
    return tenant


def seed_once() -> None:
    from apps.catalog.models import InstanceType

    if not InstanceType.objects.filter(slug="gpu-h100x1").exists():
        seed()


# --- the list --------------------------------------------------------------------------------------------


def test_the_list_shows_each_tenants_figures(staff):
    tenant = busy_tenant(slug="acme", name="Acme Labs")
    quiet = TenantFactory(slug="quiet", name="Quiet Co", credit=0)
    page = html(staff.get(reverse("console:staff_tenants")))
    row = row_of(page, "acme")
    assert "Acme Labs" in row and "boss-acme@acme.test" in row
    assert cell(row, "tenant-status") == "active"
    assert cell(row, "members") == "3"
    assert cell(row, "running") == "2"
    assert cell(row, "gpus") == "6"  # 1 + 1 running, 4 provisioning; the stopped one holds none
    assert cell(row, "spend") == "$14.75"
    assert cell(row, "balance") == "$80.25"  # 100.00 - 14.75 - 5.00
    w = wallet_of(tenant)  # the same figures as the customer's own billing page
    assert (w.month_to_date_spend, w.balance) == (Decimal("14.75"), Decimal("80.25"))
    empty = row_of(page, "quiet")
    assert cell(empty, "members") == cell(empty, "running") == cell(empty, "gpus") == "0"
    assert cell(empty, "balance") == "$0.00" and quiet.name in empty


def test_the_list_filters_by_status_and_searches_name_slug_and_owner_email(staff):
    TenantFactory(slug="alpha", name="Alpha Research")
    beta = TenantFactory(slug="beta", name="Beta Inc", status=TenantStatus.SUSPENDED)
    gamma = MembershipFactory(role="owner", user=UserFactory(email="carol@gamma.example")).tenant
    MembershipFactory(
        tenant=TenantFactory(slug="delta"), role="member", user=UserFactory(email="x@gamma.example")
    )
    url = reverse("console:staff_tenants")

    def slugs(params: dict[str, str]) -> set[str]:
        response = staff.get(url, params)
        assert response.status_code == 200
        return set(re.findall(r'id="tenant-([\w-]+)"', html(response)))

    assert {"alpha", "beta", gamma.slug, "delta"} <= slugs({})
    assert slugs({"status": "suspended"}) == {beta.slug}
    assert slugs({"q": "research"}) == {"alpha"}
    assert slugs({"q": "BETA"}) == {"beta"}
    assert slugs({"q": "gamma.example"}) == {gamma.slug}  # an owner's email; delta's member does not count
    assert slugs({"q": "beta", "status": "active"}) == set()
    assert "No tenants match these filters." in html(staff.get(url, {"q": "nothing-like-this"}))
    bad = staff.get(url, {"status": "deleted"})
    assert bad.status_code == 400 and "Not one of the choices." in html(bad)


def test_the_list_is_paginated_keeping_the_filters(staff):
    for n in range(27):
        TenantFactory(slug=f"page-{n:02d}", credit=0)
    url = reverse("console:staff_tenants")
    first = html(staff.get(url, {"q": "page-"}))
    assert len(re.findall(r'id="tenant-', first)) == 25
    assert "Page 1 of 2 (27 tenants)" in first and "?q=page-&amp;page=2" in first
    second = html(staff.get(url, {"q": "page-", "page": "2"}))
    assert re.findall(r'id="tenant-([\w-]+)"', second) == ["page-25", "page-26"]


def test_the_list_query_count_does_not_grow_with_tenants(staff):
    url = reverse("console:staff_tenants")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff.get(url).status_code == 200
        return len(ctx.captured_queries)

    for n in range(3):
        busy_tenant(slug=f"few-{n}")
    few = queries()
    for n in range(27):
        tenant = busy_tenant(slug=f"many-{n}")
        CreditGrant.objects.create(
            tenant=tenant,
            kind="promotional",
            amount=Decimal("1.00"),
            expires_at=timezone.now() - timedelta(hours=1),
        )
    assert queries() == few


# --- one tenant ------------------------------------------------------------------------------------------


def detail_url(tenant: Tenant, name: str = "staff_tenant") -> str:
    return reverse(f"console:{name}", kwargs={"staff_tenant_slug": tenant.slug})


def test_the_tenant_page_shows_figures_quota_instances_and_grants(staff):
    tenant = busy_tenant(slug="acme")
    quota_for(tenant)
    TenantQuota.objects.filter(tenant=tenant).update(max_gpus=12)
    page = html(staff.get(detail_url(tenant)))
    for fact, value in {
        "members": "3",
        "running": "2",
        "gpus": "6",
        "spend": "$14.75",
        "balance": "$80.25",
        "status": "active",
    }.items():
        assert re.search(rf'id="fact-{fact}">{re.escape(value)}\b', page), fact
    assert 'id="q-max_gpus" name="max_gpus" type="number" min="0" max="100000" value="12"' in page
    assert page.count('id="instance-') == 4 and "gpu-h100x4" in page and "provisioning" in page
    assert "test credit" in page  # the factory's grant
    assert "Choose a tenant" in page  # the tenant switcher is the staff user's own, not this tenant


def test_the_tenant_page_query_count_does_not_grow_with_instances_or_grants(staff):
    tenant = busy_tenant(slug="acme")

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert staff.get(detail_url(tenant)).status_code == 200
        return len(ctx.captured_queries)

    queries()  # warm up: the first visit creates the tenant's quota row with the defaults
    before = queries()
    for _ in range(5):
        make_instance(tenant, created_by=tenant.memberships.first().user, state="running")
        CreditGrant.objects.create(tenant=tenant, kind="paid", amount=Decimal("3.00"))
    assert queries() == before


def test_suspend_needs_a_reason_then_takes_effect_and_is_audited(staff, staff_user):
    tenant = busy_tenant(slug="acme")
    url = detail_url(tenant, "staff_tenant_suspend")
    confirm = html(staff.get(url))
    assert "Suspend" in confirm and 'name="csrfmiddlewaretoken"' in confirm and 'name="reason"' in confirm
    refused = staff.post(url, {"reason": "  "})
    assert refused.status_code == 400 and "A reason is required" in html(refused)
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.ACTIVE

    done = staff.post(url, {"reason": "Unpaid invoice"})
    assert done.status_code == 302 and done["Location"] == detail_url(tenant)
    tenant.refresh_from_db()
    assert (tenant.status, tenant.status_reason) == (TenantStatus.SUSPENDED, "Unpaid invoice")
    event = AuditEvent.objects.get(tenant=tenant, action="tenant.suspend")
    assert event.actor_user_id == staff_user.pk
    page = html(staff.get(detail_url(tenant)))
    assert "Reason: Unpaid invoice" in page and "Reactivate…" in page and "Suspend…" not in page

    # The tenant's own members now see why they cannot launch.
    member = Client()
    member.force_login(tenant.memberships.get(role="owner").user)
    dashboard = html(member.get(reverse("console:dashboard", kwargs={"tenant_slug": tenant.slug})))
    assert "This tenant is suspended." in dashboard and "Unpaid invoice" in dashboard

    assert staff.post(detail_url(tenant, "staff_tenant_reactivate")).status_code == 302
    tenant.refresh_from_db()
    assert (tenant.status, tenant.status_reason) == (TenantStatus.ACTIVE, "")
    assert AuditEvent.objects.filter(
        tenant=tenant, action="tenant.reactivate", actor_user_id=staff_user.pk
    ).exists()


def test_suspend_stops_the_running_instances_and_reactivate_names_them(staff, staff_user):
    tenant = busy_tenant(slug="acme")
    live = {i.name for i in Instance.objects.filter(tenant=tenant, state__in=["running", "provisioning"])}
    assert len(live) == 3
    confirm = html(staff.get(detail_url(tenant, "staff_tenant_suspend")))
    assert "running instances are stopped" in confirm

    suspended = staff.post(detail_url(tenant, "staff_tenant_suspend"), {"reason": "Abuse"}, follow=True)

    page = html(suspended)
    assert "Stopped its instances:" in page and all(name in page for name in live)
    assert not Instance.objects.filter(tenant=tenant, state__in=["running", "provisioning"]).exists()
    assert (
        set(Instance.objects.filter(tenant=tenant, desired_state="stopped").values_list("name", flat=True))
        >= live
    )

    reactivated = html(staff.post(detail_url(tenant, "staff_tenant_reactivate"), follow=True))

    assert "still stopped until the customer starts them:" in reactivated
    assert all(name in reactivated for name in live)
    assert not Instance.objects.filter(tenant=tenant, state__in=["running", "starting"]).exists()


def test_close_revokes_tokens_is_audited_and_cannot_be_undone(staff, staff_user):
    tenant = busy_tenant(slug="acme")
    token, _ = make_token(user=tenant.memberships.get(role="owner").user, tenant=tenant)
    assert (
        staff.post(detail_url(tenant, "staff_tenant_close"), {"reason": "Asked to leave"}).status_code == 302
    )
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.CLOSED
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert AuditEvent.objects.filter(
        tenant=tenant, action="tenant.close", actor_user_id=staff_user.pk
    ).exists()
    page = html(staff.get(detail_url(tenant)))
    assert "Reactivate…" not in page and "Close…" not in page

    again = staff.post(detail_url(tenant, "staff_tenant_reactivate"))
    assert again.status_code == 409 and "A closed tenant cannot be reopened." in html(again)
    tenant.refresh_from_db()
    assert tenant.status == TenantStatus.CLOSED


# --- credit grants ---------------------------------------------------------------------------------------


def test_granting_credit_raises_the_balance_and_is_audited(staff, staff_user):
    tenant = busy_tenant(slug="acme")
    expiry = (timezone.now() + timedelta(days=30)).date().isoformat()
    response = staff.post(
        detail_url(tenant, "staff_tenant_credit"),
        {"kind": "promotional", "amount": "50.00", "expires_at": expiry, "reason": "Conference promo"},
    )
    assert response.status_code == 302
    grant = CreditGrant.objects.get(tenant=tenant, reason="Conference promo")
    assert grant.amount == Decimal("50.00") and grant.created_by == staff_user
    assert grant.expires_at is not None and grant.expires_at.date().isoformat() == expiry
    assert AuditEvent.objects.filter(
        tenant=tenant, action="billing.credit_grant", actor_user_id=staff_user.pk
    ).exists()
    page = html(staff.get(detail_url(tenant)))
    assert re.search(r'id="fact-balance">\$130\.25', page) and "Conference promo" in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"amount": "abc"}, "amount", "Not a decimal number."),
        ({"amount": "-5"}, "amount", "more than 0"),
        ({"amount": "0"}, "amount", "more than 0"),
        ({"amount": "1.005"}, "amount", "At most 2 decimal places."),
        ({"amount": "99999999"}, "amount", "at most 1000000.00"),
        ({"amount": ""}, "amount", "Not a decimal number."),
        ({"kind": "free"}, "kind", "One of"),
        ({"kind": "paid", "expires_at": "2999-01-01"}, "expires_at", "Paid credit never expires."),
        ({"expires_at": "someday"}, "expires_at", "Enter a date as YYYY-MM-DD."),
        ({"expires_at": "2001-01-01"}, "expires_at", "Must be in the future."),
        ({"reason": ""}, "reason", "This field is required."),
    ],
)
def test_a_bad_credit_grant_shows_the_error_on_its_field(staff, form, field, message):
    tenant = TenantFactory(slug="acme")
    data = {"kind": "promotional", "amount": "10.00", "expires_at": "", "reason": "Goodwill", **form}
    response = staff.post(detail_url(tenant, "staff_tenant_credit"), data)
    assert response.status_code == 400
    page = html(response)
    ids = {"amount": "c-amount", "kind": "c-kind", "expires_at": "c-expires", "reason": "c-reason"}
    error = re.search(rf'<span class="errorlist" id="{ids[field]}-error">([^<]*)</span>', page)
    assert error and message in error.group(1)
    assert f'aria-describedby="{ids[field]}-error"' in page
    assert f'value="{data["amount"]}"' in page  # what was typed is kept
    assert CreditGrant.objects.filter(tenant=tenant).count() == 1  # only the factory's


# --- quota limits ----------------------------------------------------------------------------------------


def test_setting_quota_limits_is_audited_and_admission_uses_them(staff, staff_user):
    tenant = TenantFactory(slug="acme")
    limits = {"max_gpus": "32", "max_instances": "4", "max_vcpu": "512", "max_memory_gib": "4096"}
    data = {**limits, "max_volume_gib": "100", "max_object_storage_gib": "50", "note": "Enterprise plan"}
    assert staff.post(detail_url(tenant, "staff_tenant_quota"), data).status_code == 302
    quota = TenantQuota.objects.get(tenant=tenant)
    assert (
        quota.max_gpus,
        quota.max_instances,
        quota.max_vcpu,
        quota.max_memory_gib,
        quota.max_volume_gib,
        quota.max_object_storage_gib,
    ) == (
        32,
        4,
        512,
        4096,
        100,
        50,
    )
    event = AuditEvent.objects.get(tenant=tenant, action="quota.set")
    assert event.actor_user_id == staff_user.pk and event.changes["max_gpus"]["to"] == 32
    assert event.metadata["note"] == "Enterprise plan"
    # Saving the same limits again changes nothing and records nothing.
    assert staff.post(detail_url(tenant, "staff_tenant_quota"), data).status_code == 302
    assert AuditEvent.objects.filter(tenant=tenant, action="quota.set").count() == 1


def test_bad_quota_limits_show_errors_and_change_nothing(staff):
    tenant = TenantFactory(slug="acme")
    url = detail_url(tenant, "staff_tenant_quota")
    data = {
        "max_gpus": "-1",
        "max_instances": "lots",
        "max_vcpu": "8",
        "max_memory_gib": "64",
        "max_volume_gib": "",
    }
    response = staff.post(url, data)
    assert response.status_code == 400
    page = html(response)
    assert '<span class="errorlist" id="q-max_gpus-error">Must be between 0 and 100000.</span>' in page
    assert '<span class="errorlist" id="q-max_instances-error">Enter a whole number.</span>' in page
    assert '<span class="errorlist" id="q-max_volume_gib-error">Enter a whole number.</span>' in page
    assert 'value="lots"' in page
    assert not TenantQuota.objects.filter(tenant=tenant, max_vcpu=8).exists()
    assert not AuditEvent.objects.filter(tenant=tenant, action="quota.set").exists()
