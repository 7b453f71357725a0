"""Billing: the wallet, usage charts and invoices, top-ups and card set-up through Stripe Checkout, the
monthly budget and its alerts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing.invoices.models import Invoice
from apps.billing.models import BillingAccount, BudgetAlert
from apps.billing.selectors import month_start
from apps.billing.stripe import gateway
from apps.catalog.models import GpuType
from apps.console.charts import bar_chart
from apps.tenants.roles import Role
from tests.billing.wallet_helpers import usage
from tests.console.account.helpers import MakeActor, browser, html, page_url
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db


def test_bar_chart_scales_bars_to_the_largest_value() -> None:
    chart = bar_chart([("a", Decimal("1.00")), ("b", Decimal("4.00")), ("c", Decimal("0"))], bar_width=10)
    heights = [bar.height for bar in chart["bars"]]
    assert heights == [40, 160, 0]
    assert [bar.x for bar in chart["bars"]] == [0, 14, 28]
    assert chart["total"] == Decimal("5.00")
    assert bar_chart([])["bars"] == []


def test_billing_shows_the_wallet_usage_charts_and_invoices(make_actor: MakeActor) -> None:
    seed()
    billing = make_actor(Role.BILLING)
    now = timezone.now()
    start = month_start(now)
    # Two rows on the first day of the month: an H100 instance type and a CPU one.
    usage(billing.tenant, "2.500000", end=start + timedelta(hours=2), meter="instance_seconds:gpu-h100x1")
    usage(billing.tenant, "0.250000", end=start + timedelta(hours=3), meter="instance_seconds:cpu-4x")
    invoice = Invoice.objects.create(
        tenant=billing.tenant,
        month=(start - timedelta(days=1)).date().replace(day=1),
        period_start=start - timedelta(days=28),
        period_end=start,
        subtotal=Decimal("12.34"),
        total=Decimal("12.34"),
    )

    response = browser(billing).get(page_url("billing", billing))

    page = html(response)
    assert response.status_code == 200
    assert "997.25 USD" in page  # 1000.00 of credit less 2.75 of usage
    assert "0.00 USD per hour" in page
    assert "No instances are running." in page
    assert "prepaid" in page
    # Usage by day: an SVG chart with a <title> per bar and a table of the same numbers.
    day = start.date().isoformat()
    assert '<svg role="img" aria-labelledby="usage-by-day-title"' in page
    assert f"<title>{day}: 2.75 USD</title>" in page
    assert f"<td>{day}</td><td>2.75</td>" in page
    assert len(response.context["by_day"]["bars"]) == now.day
    # Usage by GPU type: H100 and CPU.
    h100 = GpuType.objects.get(slug="h100-80gb").slug
    assert f"<title>{h100}: 2.50 USD</title>" in page
    assert "<title>CPU: 0.25 USD</title>" in page
    # Invoices link to the existing HTML invoice page.
    assert f'href="/billing/invoices/{invoice.pk}/"' in page and "12.34" in page


def test_billing_is_for_billing_readers_only(make_actor: MakeActor) -> None:
    member = make_actor(Role.MEMBER)
    response = browser(member).get(page_url("billing", member))
    assert response.status_code == 403
    assert "billing.read" in html(response)


def test_an_admin_reads_billing_but_has_no_payment_forms(make_actor: MakeActor, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_console"
    admin = make_actor(Role.ADMIN)
    client = browser(admin)
    page = html(client.get(page_url("billing", admin)))
    assert page_url("billing_topup", admin) not in page
    assert page_url("billing_budget", admin) not in page
    assert client.post(page_url("billing_topup", admin), {"amount": "50.00"}).status_code == 403
    assert client.post(page_url("billing_budget", admin), {"monthly_budget": "5.00"}).status_code == 403


def test_without_stripe_the_page_says_payments_are_not_configured(
    make_actor: MakeActor, settings: Any
) -> None:
    settings.STRIPE_SECRET_KEY = ""
    owner = make_actor(Role.OWNER)
    client = browser(owner)

    page = html(client.get(page_url("billing", owner)))
    assert "Payments are not configured" in page
    assert page_url("billing_topup", owner) not in page

    for name, form in (("billing_topup", {"amount": "50.00"}), ("billing_card", {})):
        response = client.post(page_url(name, owner), form)
        assert response.status_code == 200
        assert "Payments are not configured" in html(response)


def _fake_stripe(monkeypatch: pytest.MonkeyPatch, settings: Any) -> dict[str, Any]:
    settings.STRIPE_SECRET_KEY = "sk_test_console"
    seen: dict[str, Any] = {}

    def customer(self: Any, **kwargs: Any) -> gateway.Customer:
        return gateway.Customer(id="cus_console")

    def checkout(mode: str) -> Callable[..., gateway.CheckoutSession]:
        def create(self: Any, **kwargs: Any) -> gateway.CheckoutSession:
            seen[mode] = kwargs
            return gateway.CheckoutSession(
                id=f"cs_{mode}",
                url=f"https://checkout.stripe.test/{mode}",
                mode=mode,
                status="open",
                payment_status=None,
                amount_total=kwargs.get("amount_cents"),
                customer_id="cus_console",
                setup_intent_id=None,
                metadata={},
            )

        return create

    monkeypatch.setattr(gateway.StripeGateway, "create_customer", customer)
    monkeypatch.setattr(gateway.StripeGateway, "create_payment_checkout", checkout("payment"))
    monkeypatch.setattr(gateway.StripeGateway, "create_setup_checkout", checkout("setup"))
    return seen


def test_a_top_up_redirects_to_stripe_checkout(
    make_actor: MakeActor, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    seen = _fake_stripe(monkeypatch, settings)
    billing = make_actor(Role.BILLING)
    client = browser(billing)
    assert page_url("billing_topup", billing) in html(client.get(page_url("billing", billing)))

    response = client.post(page_url("billing_topup", billing), {"amount": "50.00"})

    assert response.status_code == 302
    assert response.url == "https://checkout.stripe.test/payment"
    assert seen["payment"]["amount_cents"] == 5000
    assert seen["payment"]["success_url"].endswith(f"/t/{billing.tenant.slug}/billing/?topup=success")
    assert AuditEvent.objects.filter(action="billing.topup_checkout", tenant=billing.tenant).exists()

    card = client.post(page_url("billing_card", billing))
    assert card.status_code == 302 and card.url == "https://checkout.stripe.test/setup"


@pytest.mark.parametrize(
    ("amount", "message"),
    [("abc", "A valid number is required."), ("5.00", "Must be between 10.00 and 10000.00.")],
)
def test_top_up_amount_errors_are_shown(
    make_actor: MakeActor, monkeypatch: pytest.MonkeyPatch, settings: Any, amount: str, message: str
) -> None:
    seen = _fake_stripe(monkeypatch, settings)
    owner = make_actor(Role.OWNER)
    response = browser(owner).post(page_url("billing_topup", owner), {"amount": amount})
    assert response.status_code == 400
    assert message in html(response)
    assert "payment" not in seen


def test_setting_and_removing_the_monthly_budget(make_actor: MakeActor) -> None:
    billing = make_actor(Role.BILLING)
    client = browser(billing)

    response = client.post(page_url("billing_budget", billing), {"monthly_budget": "250.00", "hard": "on"})

    assert response.status_code == 302
    account = BillingAccount.objects.get(tenant=billing.tenant)
    assert (account.monthly_budget, account.budget_hard) == (Decimal("250.00"), True)
    assert AuditEvent.objects.filter(action="billing.budget_set", tenant=billing.tenant).exists()
    page = html(client.get(page_url("billing", billing)))
    assert "Budget: 250.00 USD (hard" in page

    assert client.post(page_url("billing_budget", billing), {"monthly_budget": ""}).status_code == 302
    account.refresh_from_db()
    assert account.monthly_budget is None and account.budget_hard is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "greater than or equal to 0"),
        ("lots", "A valid number is required."),
        ("1.234", "decimal places"),
    ],
)
def test_budget_form_errors(make_actor: MakeActor, value: str, message: str) -> None:
    owner = make_actor(Role.OWNER)
    response = browser(owner).post(page_url("billing_budget", owner), {"monthly_budget": value})
    assert response.status_code == 400
    assert message in html(response)
    assert 'aria-invalid="true"' in html(response)
    assert not BillingAccount.objects.filter(tenant=owner.tenant, monthly_budget__isnull=False).exists()


def test_budget_alerts_sent_this_month_are_listed(make_actor: MakeActor) -> None:
    billing = make_actor(Role.BILLING)
    this_month = month_start(timezone.now()).date()
    last_month = (month_start(timezone.now()) - timedelta(days=1)).date().replace(day=1)
    BudgetAlert.objects.create(
        tenant=billing.tenant, month=this_month, threshold=80, spend=Decimal("80.5"), budget=Decimal("100")
    )
    BudgetAlert.objects.create(
        tenant=billing.tenant, month=last_month, threshold=50, spend=Decimal("50"), budget=Decimal("100")
    )
    page = html(browser(billing).get(page_url("billing", billing)))
    assert "80% on" in page and "80.50 of 100.00 USD" in page
    assert "50% on" not in page
