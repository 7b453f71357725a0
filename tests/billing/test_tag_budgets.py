"""Tag budgets (apps/billing/tag_budget_*.py, limits.check_tag_budgets): the API under the tenant (roles,
validation naming the field, 404 across tenants, audit), a tag's month-to-date spend (its ledger rows as
metered plus the open usage of what carries it now), and the 50/80/100 percent alerts, each once per budget,
month and threshold, by email to owners and billing members."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import limits, tag_budget_selectors
from apps.billing.models import TagBudget, TagBudgetAlert, UsageRecord
from apps.billing.selectors import month_start
from apps.billing.tag_budget_services import MAX_TAG_BUDGETS
from apps.tenants.models import Tenant
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import grant, launch, run_since
from tests.conftest import Actor
from tests.factories import MembershipFactory, TenantFactory
from tests.instances.helpers import seed
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

D = Decimal
_ids = itertools.count()


def tagged(tenant: Tenant, amount: str, tags: dict[str, str], *, start: datetime) -> UsageRecord:
    n = next(_ids)
    return UsageRecord.objects.create(
        id=f"tag-budget-test:{n}",
        tenant=tenant,
        resource_type="instance",
        resource_id=f"tag-budget-test-{n}",
        meter="instance_seconds:gpu-h100x1",
        period=DateTimeTZRange(start, start + timedelta(seconds=60), "[)"),
        quantity_seconds=60,
        unit_price_per_hour=D("1.0000"),
        amount=D(amount),
        tags=tags,
    )


@pytest.fixture
def actor(make_actor: Any) -> Actor:
    return make_actor(tenant=TenantFactory())


def create(actor: Actor, **body: Any) -> Any:
    payload = {"key": "team", "value": "ml", "monthly_amount": "10.00", **body}
    return actor.token_client().post(actor.url("/billing/tag-budgets"), payload, format="json")


# --- the API ---------------------------------------------------------------------------------------------


def test_create_list_update_and_delete_are_audited(actor: Actor) -> None:
    response = create(actor, key="Team", value="ML", monthly_amount="500.00")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["key"], body["value"], body["monthly_amount"]) == ("team", "ML", "500.00")
    assert (body["month_to_date_spend"], body["percent_used"], body["alerts_sent"]) == ("0", "0.0", [])
    budget_id = body["id"]
    url = actor.url(f"/billing/tag-budgets/{budget_id}")

    listed = actor.token_client().get(actor.url("/billing/tag-budgets")).json()
    assert [b["id"] for b in listed["results"]] == [budget_id]
    changed = actor.token_client().patch(url, {"monthly_amount": "750.00"}, format="json")
    assert changed.status_code == 200 and changed.json()["monthly_amount"] == "750.00"
    assert actor.token_client().delete(url).status_code == 204
    assert actor.token_client().get(url).status_code == 404
    assert not TagBudget.objects.filter(pk=budget_id).exists()

    events = AuditEvent.objects.filter(tenant=actor.tenant, target_id=budget_id).order_by("pk")
    assert [(e.action, e.actor_user_id) for e in events] == [
        ("billing.tag_budget_create", actor.user.pk),
        ("billing.tag_budget_update", actor.user.pk),
        ("billing.tag_budget_delete", actor.user.pk),
    ]
    assert events[0].changes == {"key": "team", "value": "ML", "monthly_amount": "500.00"}
    assert events[1].changes == {"monthly_amount": {"from": "500.00", "to": "750.00"}}


def test_a_tag_has_one_budget(actor: Actor) -> None:
    assert create(actor).status_code == 201
    assert_error(create(actor, key="TEAM"), 409, "tag_budget_exists", "key")
    assert create(actor, value="research").status_code == 201


def test_a_tenant_has_at_most_the_bound_of_tag_budgets(actor: Actor) -> None:
    TagBudget.objects.bulk_create(
        TagBudget(tenant=actor.tenant, key="team", value=f"t{n}", monthly_amount=1)
        for n in range(MAX_TAG_BUDGETS)
    )
    error = assert_error(create(actor, value="one-more"), 400, "invalid", "key")
    assert f"At most {MAX_TAG_BUDGETS}" in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "bad key"}, "key"),
        ({"key": "gpucloud.x"}, "key"),
        ({"key": ""}, "key"),
        ({"value": "a\x07b"}, "value"),
        ({"value": "v" * 256}, "value"),
        ({"value": 5}, "value"),
        ({"monthly_amount": "0"}, "monthly_amount"),
        ({"monthly_amount": "1.001"}, "monthly_amount"),
        ({"monthly_amount": 10}, "monthly_amount"),
        ({"monthly_amount": "-5.00"}, "monthly_amount"),
        ({"hard": True}, "hard"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(actor: Actor, body: dict[str, Any], field: str) -> None:
    assert_error(create(actor, **body), 400, "invalid", field)
    assert not TagBudget.objects.filter(tenant=actor.tenant).exists()


def test_an_update_takes_only_a_valid_amount(actor: Actor) -> None:
    url = actor.url(f"/billing/tag-budgets/{create(actor).json()['id']}")
    client = actor.token_client()
    assert_error(
        client.patch(url, {"monthly_amount": "0.00"}, format="json"), 400, "invalid", "monthly_amount"
    )
    assert_error(client.patch(url, {"value": "other"}, format="json"), 400, "invalid", "value")
    assert TagBudget.objects.get(tenant=actor.tenant).monthly_amount == D("10.00")


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
def test_roles(make_actor: Any, actor: Actor, role: str, can_read: bool, can_write: bool) -> None:
    budget_id = create(actor).json()["id"]
    other = make_actor(role=role, tenant=actor.tenant)
    client = other.token_client()
    listed = client.get(other.url("/billing/tag-budgets"))
    assert listed.status_code == (200 if can_read else 403)
    assert create(other, value="theirs").status_code == (201 if can_write else 403)
    patched = client.patch(
        other.url(f"/billing/tag-budgets/{budget_id}"), {"monthly_amount": "1.00"}, format="json"
    )
    assert patched.status_code == (200 if can_write else 403)


def test_another_tenants_budget_is_a_404(actor: Actor, make_actor: Any) -> None:
    budget_id = create(actor).json()["id"]
    stranger = make_actor()
    url = stranger.url(f"/billing/tag-budgets/{budget_id}")
    client = stranger.token_client()
    assert_error(client.get(url), 404)
    assert_error(client.patch(url, {"monthly_amount": "1.00"}, format="json"), 404)
    assert_error(client.delete(url), 404)
    assert client.get(stranger.url("/billing/tag-budgets")).json()["results"] == []
    assert TagBudget.objects.get(pk=budget_id).monthly_amount == D("10.00")


# --- the spend -------------------------------------------------------------------------------------------


def test_spend_is_this_months_ledger_rows_carrying_the_tag(actor: Actor) -> None:
    now = month_start(timezone.now()) + timedelta(days=3)
    this_month = month_start(now) + timedelta(hours=2)
    tagged(actor.tenant, "1.25", {"team": "ml", "env": "prod"}, start=this_month)
    tagged(actor.tenant, "2.00", {"team": "ml"}, start=this_month + timedelta(minutes=1))
    tagged(actor.tenant, "4.00", {"team": "research"}, start=this_month)  # another value
    tagged(actor.tenant, "8.00", {"TEAM": "ml"}, start=this_month)  # not a key we write: no match
    tagged(actor.tenant, "16.00", {"team": "ml"}, start=month_start(now) - timedelta(hours=1))  # last month
    tagged(TenantFactory(), "32.00", {"team": "ml"}, start=this_month)  # another tenant
    ml = TagBudget.objects.create(tenant=actor.tenant, key="team", value="ml", monthly_amount=10)
    prod = TagBudget.objects.create(tenant=actor.tenant, key="env", value="prod", monthly_amount=10)
    spend = tag_budget_selectors.month_to_date_spend([ml, prod], now=now)
    assert spend == {ml.pk: D("3.25"), prod.pk: D("1.25")}


def test_spend_counts_the_open_usage_of_what_carries_the_tag_now(actor: Actor) -> None:
    seed()
    grant(actor.tenant, "100.00")
    now = timezone.now().replace(microsecond=0)
    start = max(now - timedelta(hours=1), month_start(now))
    ml = run_since(launch(actor, name="ml-1", tags={"team": "ml"}), start)
    run_since(launch(actor, name="other", tags={"team": "research"}), start)
    budget = TagBudget.objects.create(tenant=actor.tenant, key="team", value="ml", monthly_amount=100)
    spend = tag_budget_selectors.month_to_date_spend([budget], now=now)[budget.pk]
    seconds = int((now - start).total_seconds())
    # Rated like the ledger (2.49/h, cut in pieces rounded to 6 places): within a micro-unit a piece.
    assert abs(spend - D("2.49") * seconds / 3600) < D("0.0001")
    body = actor.token_client().get(actor.url(f"/billing/tag-budgets/{budget.pk}")).json()
    assert D(body["month_to_date_spend"]) >= spend  # read a moment later
    ml.refresh_from_db()
    assert ml.tags == {"team": "ml"}


# --- the alerts ------------------------------------------------------------------------------------------


def test_each_threshold_alerts_once_per_budget_and_month(
    actor: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    billing = MembershipFactory(tenant=actor.tenant, role=Role.BILLING)
    MembershipFactory(tenant=actor.tenant, role=Role.MEMBER)
    now = month_start(timezone.now()) + timedelta(days=3)
    early = month_start(now) + timedelta(hours=1)
    budget = TagBudget.objects.create(tenant=actor.tenant, key="team", value="ml", monthly_amount=D("10.00"))
    TagBudget.objects.create(tenant=actor.tenant, key="team", value="research", monthly_amount=D("1.00"))

    def check(at: datetime = now) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return limits.check_budgets(now=at)

    assert check() == 0
    tagged(actor.tenant, "4.99", {"team": "ml"}, start=early)
    assert check() == 0
    tagged(actor.tenant, "0.01", {"team": "ml"}, start=early + timedelta(minutes=1))  # 5.00: 50 %
    assert check() == 1
    assert check() == 0
    tagged(actor.tenant, "5.00", {"team": "ml"}, start=early + timedelta(minutes=2))  # 10.00: 80 and 100 %
    assert check() == 2
    assert check() == 0

    alerts = TagBudgetAlert.objects.filter(tag_budget=budget).order_by("threshold")
    assert [(a.threshold, a.spend, a.budget) for a in alerts] == [
        (50, D("5.00"), D("10.00")),
        (80, D("10.00"), D("10.00")),
        (100, D("10.00"), D("10.00")),
    ]
    events = AuditEvent.objects.filter(tenant=actor.tenant, action="billing.tag_budget_alert")
    assert sorted(e.metadata["threshold"] for e in events) == [50, 80, 100]
    assert {(e.metadata["key"], e.metadata["value"]) for e in events} == {("team", "ml")}
    assert len(mail.outbox) == 3
    assert {tuple(m.to) for m in mail.outbox} == {tuple(sorted([actor.user.email, billing.user.email]))}
    assert "100% of the budget for tag team=ml" in mail.outbox[-1].subject
    body = actor.token_client().get(actor.url(f"/billing/tag-budgets/{budget.pk}")).json()
    assert body["alerts_sent"] == [50, 80, 100]

    # The next month starts afresh.
    next_month = month_start(now + timedelta(days=32)) + timedelta(hours=2)
    assert check(next_month) == 0
    tagged(actor.tenant, "6.00", {"team": "ml"}, start=next_month - timedelta(minutes=30))
    assert check(next_month) == 1
    assert len(mail.outbox) == 4


def test_a_raised_amount_keeps_the_alerts_sent_and_can_reach_the_others(
    actor: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    now = month_start(timezone.now()) + timedelta(days=3)
    budget = TagBudget.objects.create(tenant=actor.tenant, key="team", value="ml", monthly_amount=D("10.00"))
    tagged(actor.tenant, "6.00", {"team": "ml"}, start=month_start(now) + timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert limits.check_budgets(now=now) == 1  # 60 %: 50
    TagBudget.objects.filter(pk=budget.pk).update(monthly_amount=D("7.00"))
    with django_capture_on_commit_callbacks(execute=True):
        assert limits.check_budgets(now=now) == 1  # 85.7 %: 80 only, 50 was sent
    assert sorted(TagBudgetAlert.objects.values_list("threshold", flat=True)) == [50, 80]


def test_tag_budgets_only_alert(actor: Actor, django_capture_on_commit_callbacks: Any) -> None:
    """Soft: a spent tag budget refuses nothing and stops nothing."""
    seed()
    grant(actor.tenant, "100.00")
    now = timezone.now()
    TagBudget.objects.create(tenant=actor.tenant, key="team", value="ml", monthly_amount=D("0.01"))
    tagged(actor.tenant, "5.00", {"team": "ml"}, start=max(month_start(now), now - timedelta(hours=1)))
    with django_capture_on_commit_callbacks(execute=True):
        limits.check_budgets(now=now)
    instance = launch(actor, name="still-ok", tags={"team": "ml"})
    assert instance.state == "pending"
    assert limits.enforce_limits(now=now) == 0


def test_the_email_task_is_registered_with_the_worker() -> None:
    from config.celery import app

    assert "apps.billing.tag_budget_emails.send_tag_budget_alert_email" in app.tasks


def test_an_alert_of_a_deleted_budget_sends_nothing(actor: Actor) -> None:
    from apps.billing.tag_budget_emails import send_tag_budget_alert_email

    assert send_tag_budget_alert_email(12345678) == 0
    assert mail.outbox == []
