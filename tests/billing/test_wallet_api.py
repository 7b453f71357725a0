"""The billing API: usage, balance, budget and credits per tenant (roles, scopes, validation, query
counts), the staff-only grant and billing-mode endpoints, and the Django admin tools."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import scopes
from apps.audit.models import AuditEvent
from apps.billing.models import BillingAccount, CreditGrant
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import grant, launch, minute_aligned, run_since, usage
from tests.conftest import login_staff
from tests.factories import TenantFactory, UserFactory
from tests.instances.helpers import seed
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

D = Decimal
READS = ["/billing/usage", "/billing/balance", "/billing/budget", "/billing/credits"]


@pytest.fixture
def tenant():
    return TenantFactory(credit=0)


@pytest.fixture
def staff_client():
    return login_staff(APIClient(), UserFactory(is_staff=True))


# --- roles and scopes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "can_read", "can_write"),
    [
        (Role.OWNER, True, True),
        (Role.BILLING, True, True),
        (Role.ADMIN, True, False),
        (Role.MEMBER, False, False),
        (Role.VIEWER, False, False),
    ],
)
def test_roles_matrix(make_actor, tenant, role, can_read, can_write):
    actor = make_actor(role=role, tenant=tenant)
    for client in (actor.session_client(), actor.token_client()):
        for path in READS:
            response = client.get(actor.url(path))
            if can_read:
                assert response.status_code == 200, (path, response.content[:300])
            else:
                assert_error(response, 403)
        response = client.put(actor.url("/billing/budget"), {"monthly_budget": "10.00"}, format="json")
        if can_write:
            assert response.status_code == 200, response.content[:300]
        else:
            assert_error(response, 403)


def test_scopes_matrix(make_actor, tenant):
    reader = make_actor(tenant=tenant, token_scopes=(scopes.BILLING_READ,))
    client = reader.token_client()
    assert all(client.get(reader.url(path)).status_code == 200 for path in READS)
    assert_error(client.put(reader.url("/billing/budget"), {"monthly_budget": "1"}, format="json"), 403)

    writer = make_actor(tenant=tenant, token_scopes=(scopes.BILLING_WRITE,))
    assert writer.token_client().get(writer.url("/billing/balance")).status_code == 200  # write implies read
    put = writer.token_client().put(writer.url("/billing/budget"), {"monthly_budget": "1"}, format="json")
    assert put.status_code == 200

    other = make_actor(tenant=tenant, token_scopes=(scopes.INSTANCES_READ,))
    for path in READS:
        assert_error(other.token_client().get(other.url(path)), 403, "missing_scope")


# --- balance, credits, budget --------------------------------------------------------------------------


def test_balance_shows_the_wallet(make_actor, tenant):
    seed()
    actor = make_actor(tenant=tenant)
    grant(tenant, "10.00")
    usage(tenant, "1.500000", end=minute_aligned() - timedelta(hours=1))
    body = actor.token_client().get(actor.url("/billing/balance")).json()
    assert body["balance"] == "8.500000"
    assert body["credits"] == "10.000000" and body["usage"] == "1.500000"
    assert body["burn_rate_per_hour"] == "0.0000" and body["runway_seconds"] is None
    assert body["mode"] == "prepaid" and body["currency"] == "USD"

    run_since(launch(actor), timezone.now() - timedelta(seconds=30))
    body = actor.token_client().get(actor.url("/billing/balance")).json()
    assert body["burn_rate_per_hour"] == "2.4900"
    assert D(body["balance"]) < D("8.5") and body["runway_seconds"] > 0


def test_credits_list_each_grant_with_what_remains(make_actor, tenant):
    actor = make_actor(tenant=tenant)
    now = timezone.now()
    promo = grant(tenant, "5.00", at=now - timedelta(days=2), expires_at=now + timedelta(days=5))
    paid = grant(tenant, "20.00", at=now - timedelta(days=2), kind="paid")
    usage(tenant, "2.00", end=minute_aligned() - timedelta(hours=1))
    body = actor.token_client().get(actor.url("/billing/credits")).json()
    rows = {row["id"]: row for row in body["results"]}
    assert body["count"] == 2
    assert rows[str(promo.pk)]["remaining"] == "3.000000" and rows[str(promo.pk)]["expired"] is False
    assert rows[str(paid.pk)]["remaining"] == "20.000000" and rows[str(paid.pk)]["kind"] == "paid"


def test_budget_put_and_get_are_audited(make_actor, tenant):
    actor = make_actor(tenant=tenant)
    response = actor.token_client().put(
        actor.url("/billing/budget"), {"monthly_budget": "250.00", "hard": True}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "monthly_budget": "250.00",
        "hard": True,
        "month_to_date_spend": "0.000000",
        "alerts_sent": [],
    }
    assert actor.token_client().get(actor.url("/billing/budget")).json()["monthly_budget"] == "250.00"
    event = AuditEvent.objects.get(tenant=tenant, action="billing.budget_set")
    assert event.changes["monthly_budget"] == {"from": None, "to": "250.00"}
    cleared = actor.token_client().put(actor.url("/billing/budget"), {"monthly_budget": None}, format="json")
    assert cleared.json()["monthly_budget"] is None and cleared.json()["hard"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"monthly_budget": "abc"}, "monthly_budget"),
        ({"monthly_budget": "-5"}, "monthly_budget"),
        ({"monthly_budget": "0"}, "monthly_budget"),
        ({"monthly_budget": "1.001"}, "monthly_budget"),
        ({"monthly_budget": "1e30"}, "monthly_budget"),
        ({}, "monthly_budget"),
        ({"monthly_budget": "5", "hard": "maybe"}, "hard"),
    ],
)
def test_budget_bad_input_names_the_field(make_actor, tenant, body, field):
    actor = make_actor(tenant=tenant)
    response = actor.token_client().put(actor.url("/billing/budget"), body, format="json")
    assert_error(response, 400, "invalid", field)


# --- usage ---------------------------------------------------------------------------------------------


def test_usage_groups_by_instance_type_instance_and_day(make_actor, tenant):
    seed()
    actor = make_actor(tenant=tenant)
    grant(tenant, "100.00")
    day = minute_aligned(timezone.now() - timedelta(days=3)).replace(hour=12, minute=0)
    a = launch(actor, name="alpha")
    b = launch(actor, name="beta", instance_type="gpu-a100x1")
    from apps.billing import metering

    for instance, start, seconds in [(a, day, 3600), (b, day, 1800), (a, day + timedelta(days=1), 600)]:
        from apps.instances.models import InstanceEvent

        InstanceEvent.objects.create(
            instance=instance, kind="observation", name="pod_ready", from_state="stopped",
            to_state="running", created_at=start, billable=True,
        )  # fmt: skip
        InstanceEvent.objects.create(
            instance=instance, kind="action", name="stop", from_state="running", to_state="stopping",
            created_at=start + timedelta(seconds=seconds),
        )  # fmt: skip
    for instance in (a, b):
        metering.meter_instance(instance)

    params = {"from": (day - timedelta(hours=1)).isoformat(), "to": (day + timedelta(days=2)).isoformat()}
    client = actor.token_client()
    by_type = client.get(actor.url("/billing/usage"), {**params, "group_by": "instance_type"}).json()
    rows = {r["key"]: r for r in by_type["results"]}
    assert {key: row["quantity_seconds"] for key, row in rows.items()} == {
        "gpu-h100x1": 4200,
        "gpu-a100x1": 1800,
    }
    assert rows["gpu-h100x1"]["amount"] == "2.905000"  # 4200 s at 2.49/h
    assert D(by_type["total"]) == sum(D(r["amount"]) for r in by_type["results"])

    by_instance = client.get(actor.url("/billing/usage"), {**params, "group_by": "instance"}).json()
    assert {r["name"]: r["quantity_seconds"] for r in by_instance["results"]} == {"alpha": 4200, "beta": 1800}
    assert {r["key"] for r in by_instance["results"]} == {str(a.pk), str(b.pk)}

    by_day = client.get(actor.url("/billing/usage"), {**params, "group_by": "day"}).json()
    assert [(r["key"], r["quantity_seconds"]) for r in by_day["results"]] == [
        (day.date().isoformat(), 5400),
        ((day + timedelta(days=1)).date().isoformat(), 600),
    ]
    assert by_day["results"][0]["quantity_hours"] == "1.500000"

    # Rows end at hourly checkpoints (and at stops), so a range is exact to the hour: the hour from 12:00
    # holds alpha's hour and beta's half hour, the next one nothing (alpha stopped at 13:00).
    hours = [
        client.get(
            actor.url("/billing/usage"),
            {
                "from": (day + k * timedelta(hours=1)).isoformat(),
                "to": (day + (k + 1) * timedelta(hours=1)).isoformat(),
            },
        ).json()
        for k in (0, 1)
    ]
    assert [sum(r["quantity_seconds"] for r in h["results"]) for h in hours] == [5400, 0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"),
        ({"from": "2026-11-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}, "to"),
        ({"group_by": "region"}, "group_by"),
    ],
)
def test_usage_bad_input_names_the_field(make_actor, tenant, params, field):
    actor = make_actor(tenant=tenant)
    assert_error(actor.token_client().get(actor.url("/billing/usage"), params), 400, "invalid", field)


def test_usage_defaults_to_this_month(make_actor, tenant):
    actor = make_actor(tenant=tenant)
    body = actor.token_client().get(actor.url("/billing/usage")).json()
    assert body["group_by"] == "instance_type" and body["results"] == [] and body["total"] == "0.000000"
    assert body["from"].endswith("01T00:00:00Z")


# --- query counts --------------------------------------------------------------------------------------


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, params or {}).status_code == 200
    return len(ctx.captured_queries)


def test_query_counts_do_not_grow_with_data(make_actor, tenant):
    seed()
    actor = make_actor(tenant=tenant)
    client = actor.token_client()
    now = minute_aligned()
    grant(tenant, "100.00")
    run_since(launch(actor, name="first"), now - timedelta(minutes=3))
    usage(tenant, "1.00", end=now - timedelta(hours=1))
    urls = [(actor.url(path), None) for path in READS] + [
        (actor.url("/billing/usage"), {"group_by": group}) for group in ("instance", "instance_type", "day")
    ]
    client.get(actor.url("/billing/balance"))  # warm up: the token's first use is recorded once
    before = [_queries(client, url, params) for url, params in urls]
    for n in range(4):
        grant(tenant, "1.00", expires_at=now - timedelta(hours=n + 1))
        run_since(launch(actor, name=f"more-{n}"), now - timedelta(minutes=2))
        usage(tenant, "0.50", end=now - timedelta(days=n + 1), meter=f"instance_seconds:t{n}")
    assert [_queries(client, url, params) for url, params in urls] == before


# --- staff ---------------------------------------------------------------------------------------------


def test_staff_grant_credit_through_the_api(staff_client, tenant):
    url = f"/api/v1/staff/tenants/{tenant.slug}/credit-grants"
    expires = (timezone.now() + timedelta(days=30)).isoformat()
    body = {"kind": "promotional", "amount": "25.00", "reason": "Welcome", "expires_at": expires}
    response = staff_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="grant-1")
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "25.00" and response.json()["remaining"] == "25.000000"
    replay = staff_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="grant-1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert CreditGrant.objects.filter(tenant=tenant).count() == 1
    event = AuditEvent.objects.get(tenant=tenant, action="billing.credit_grant")
    assert event.actor_user is not None and event.actor_user.is_staff


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "abc", "reason": "x"}, "amount"),
        ({"amount": "-1", "reason": "x"}, "amount"),
        ({"amount": "0", "reason": "x"}, "amount"),
        ({"amount": "1.005", "reason": "x"}, "amount"),
        ({"amount": "1", "reason": ""}, "reason"),
        ({"amount": "1", "reason": "x", "kind": "gift"}, "kind"),
        ({"amount": "1", "reason": "x", "expires_at": "next week"}, "expires_at"),
        ({"amount": "1", "reason": "x", "kind": "paid", "expires_at": "2030-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_staff_grant_bad_input_names_the_field(staff_client, tenant, body, field):
    url = f"/api/v1/staff/tenants/{tenant.slug}/credit-grants"
    assert_error(staff_client.post(url, body, format="json"), 400, "invalid", field)
    assert not CreditGrant.objects.filter(tenant=tenant).exists()


def test_staff_switch_to_postpaid(staff_client, tenant):
    url = f"/api/v1/staff/tenants/{tenant.slug}/billing-mode"
    response = staff_client.put(url, {"mode": "postpaid", "credit_limit": "500.00"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"mode": "postpaid", "credit_limit": "500.00"}
    account = BillingAccount.objects.get(tenant=tenant)
    assert (account.mode, account.credit_limit) == ("postpaid", D("500.00"))
    assert AuditEvent.objects.filter(tenant=tenant, action="billing.mode_set").count() == 1
    assert_error(staff_client.put(url, {"mode": "barter"}, format="json"), 400, "invalid", "mode")
    assert_error(
        staff_client.put(url, {"mode": "postpaid", "credit_limit": "-1"}, format="json"), 400, "invalid",
        "credit_limit",
    )  # fmt: skip


def test_staff_endpoints_are_404_for_everyone_else(make_actor, tenant):
    staff = make_actor(tenant=tenant, is_staff=True)
    owner = make_actor(tenant=tenant)
    urls = [
        ("post", f"/api/v1/staff/tenants/{tenant.slug}/credit-grants", {"amount": "5", "reason": "x"}),
        ("put", f"/api/v1/staff/tenants/{tenant.slug}/billing-mode", {"mode": "postpaid"}),
    ]
    for method, url, body in urls:
        for client in (owner.session_client(), owner.token_client(), staff.token_client()):  # tokens never
            assert_error(getattr(client, method)(url, body, format="json"), 404, "not_found")
    missing = "/api/v1/staff/tenants/no-such-tenant/billing-mode"
    staff_session = login_staff(APIClient(), staff.user)
    assert_error(staff_session.put(missing, {"mode": "postpaid"}, format="json"), 404, "not_found")
    assert not CreditGrant.objects.filter(tenant=tenant).exists()
    assert not BillingAccount.objects.filter(tenant=tenant, mode="postpaid").exists()


# --- admin ---------------------------------------------------------------------------------------------


def test_admin_grants_credit_and_switches_mode_audited(tenant):
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client = login_staff(Client(), admin_user)
    response = client.post(
        "/admin/billing/creditgrant/add/",
        {"tenant": tenant.pk, "kind": "promotional", "amount": "12.50", "reason": "Conference"},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    grant_row = CreditGrant.objects.get(tenant=tenant)
    assert (grant_row.amount, grant_row.created_by) == (D("12.50"), admin_user)
    assert AuditEvent.objects.filter(tenant=tenant, action="billing.credit_grant").count() == 1

    account = BillingAccount.objects.create(tenant=tenant)
    response = client.post(
        "/admin/billing/billingaccount/",
        {"action": "make_postpaid", "_selected_action": [account.pk]},
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.mode == "postpaid"
    assert AuditEvent.objects.filter(tenant=tenant, action="billing.mode_set").count() == 1


def test_the_billing_endpoints_are_in_the_schema(api_client, owner):
    schema = owner.session_client().get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    paths = schema.json()["paths"] if schema["Content-Type"].startswith("application/json") else None
    if paths is None:
        import yaml

        paths = yaml.safe_load(schema.content)["paths"]
    base = "/api/v1/tenants/{tenant_slug}/billing"
    assert {"get"} <= set(paths[f"{base}/usage"]) and {"get", "put"} <= set(paths[f"{base}/budget"])
    assert "get" in paths[f"{base}/balance"] and "get" in paths[f"{base}/credits"]
    assert "post" in paths["/api/v1/staff/tenants/{staff_tenant_slug}/credit-grants"]
    assert "put" in paths["/api/v1/staff/tenants/{staff_tenant_slug}/billing-mode"]
    assert {p["name"] for p in paths[f"{base}/usage"]["get"]["parameters"]} >= {"from", "to", "group_by"}
