"""Every call the adapter makes, against a real stripe-mock: Stripe's API accepts the request shapes."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.billing.stripe import checkout, customers, gateway, usage_export
from apps.billing.stripe.models import CheckoutKind, CheckoutSession, StripeCustomer, StripeMeter
from apps.catalog.models import InstanceType
from tests.billing.stripe.conftest import API_KEY
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def create_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = gateway.StripeGateway.create_customer

    def counting(self: gateway.StripeGateway, **kwargs: Any) -> gateway.Customer:
        calls.append(kwargs["idempotency_key"])
        return original(self, **kwargs)

    monkeypatch.setattr(gateway.StripeGateway, "create_customer", counting)
    return calls


def test_the_api_version_is_pinned_to_the_sdks() -> None:
    import stripe

    assert gateway.API_VERSION == stripe._api_version._ApiVersion.CURRENT


def test_only_the_gateway_imports_stripe() -> None:
    pattern = re.compile(r"^\s*(import stripe\b|from stripe\b)", re.M)
    importers = [
        str(path.relative_to(settings.BASE_DIR))
        for path in (Path(settings.BASE_DIR) / "apps").rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert importers == ["apps/billing/stripe/gateway.py"]


def test_customer_is_created_once_per_tenant(stripe_on, owner, create_calls) -> None:
    first = customers.customer_for(tenant=owner.tenant)
    second = customers.customer_for(tenant=owner.tenant)
    assert first.pk == second.pk
    assert first.customer_id.startswith("cus_")
    assert create_calls == [f"gpucloud-customer:{owner.tenant.pk}"]  # deterministic Idempotency-Key
    assert StripeCustomer.objects.filter(tenant=owner.tenant).count() == 1


def test_topup_checkout_is_mode_payment_in_cents(stripe_on, owner, monkeypatch) -> None:
    seen: dict[str, Any] = {}
    original = gateway.StripeGateway.create_payment_checkout

    def spy(self: gateway.StripeGateway, **kwargs: Any) -> gateway.CheckoutSession:
        seen.update(kwargs)
        return original(self, **kwargs)

    monkeypatch.setattr(gateway.StripeGateway, "create_payment_checkout", spy)
    opened = checkout.checkout_topup_create(actor=owner.user, tenant=owner.tenant, amount=Decimal("12.34"))
    assert seen["amount_cents"] == 1234
    assert opened.url.startswith("https://")
    assert opened.record.session_id.startswith("cs_")
    assert opened.record.kind == CheckoutKind.TOPUP
    assert opened.record.amount == Decimal("12.34")


def test_card_setup_checkout_and_portal(stripe_on, owner) -> None:
    opened = checkout.checkout_card_setup_create(actor=owner.user, tenant=owner.tenant)
    assert opened.url.startswith("https://")
    assert CheckoutSession.objects.get(session_id=opened.record.session_id).kind == CheckoutKind.CARD_SETUP
    assert checkout.portal_session_create(actor=owner.user, tenant=owner.tenant).startswith("https://")


def test_meters_and_metered_prices_per_rate_in_force_once(stripe_on, monkeypatch, settings) -> None:
    seed()
    settings.OBJECT_STORAGE_PRICE_PER_GIB_HOUR = Decimal("0.0001")
    created: list[tuple[str, Decimal]] = []
    original = gateway.StripeGateway.create_meter_with_price

    def spy(self: gateway.StripeGateway, **kwargs: Any) -> gateway.Meter:
        created.append((kwargs["rate_key"], kwargs["unit_amount_cents"]))
        return original(self, **kwargs)

    monkeypatch.setattr(gateway.StripeGateway, "create_meter_with_price", spy)
    meters = usage_export.ensure_meters()
    types = dict(InstanceType.objects.values_list("slug", "price_per_hour"))
    expected = {f"instance_seconds:{slug}@{price}" for slug, price in types.items()}
    expected.add("object_storage_gib_hours@0.0001")
    assert {key for key, _ in created} == expected
    assert all(m.meter_id and m.price_id for m in meters)
    usage_export.ensure_meters()
    assert len(created) == len(expected) == StripeMeter.objects.count()  # once each
    h100 = InstanceType.objects.get(slug="gpu-h100x1")
    per_second = dict(created)[f"instance_seconds:gpu-h100x1@{h100.price_per_hour}"]
    # cents per second to 12 places, rounded up: price per hour * 100 / 3600
    assert Decimal(0) <= per_second * 3600 - h100.price_per_hour * 100 < Decimal("0.000000004")
    record = StripeMeter.objects.get(meter_key="instance_seconds:gpu-h100x1")
    assert (
        record.event_name
        == f"gpucloud_instance_seconds_gpu_h100x1_at_{str(h100.price_per_hour).replace('.', '_')}"
    )
    assert (record.unit, record.unit_amount_decimal) == ("second", per_second)
    storage = StripeMeter.objects.get(meter_key="object_storage_gib_hours")
    # 0.0001 per GiB-hour: 0.01 cents per GiB-hour, per GiB-second 0.0000027777... rounded up.
    assert (storage.unit, storage.unit_amount_decimal) == ("gib_second", Decimal("0.000002777778"))


def test_meter_events_and_summaries(stripe_on, owner) -> None:
    client = gateway.gateway()
    customer = customers.customer_for(tenant=owner.tenant)
    hour = datetime(2026, 11, 1, 10, tzinfo=UTC)
    sent = client.send_meter_event(
        event_name="gpucloud_instance_seconds_gpu_h100x1",
        customer_id=customer.customer_id,
        value=3600,
        timestamp=hour,
        identifier=f"{owner.tenant.pk}:instance_seconds:gpu-h100x1:{int(hour.timestamp())}",
    )
    assert sent.identifier.endswith(str(int(hour.timestamp())))
    summaries = client.meter_event_summaries(
        meter_id="mtr_123", customer_id=customer.customer_id, start=hour, end=hour.replace(hour=11)
    )
    assert summaries and all(isinstance(s.aggregated_value, float) for s in summaries)
    assert all(s.start.tzinfo is not None for s in summaries)


def test_objects_webhooks_refetch(stripe_on) -> None:
    client = gateway.gateway()
    assert client.retrieve_checkout_session("cs_test_x").id == "cs_test_x"
    invoice = client.retrieve_invoice("in_x")
    assert invoice.id == "in_x" and invoice.customer_id and invoice.status
    subscription = client.retrieve_subscription("sub_x")
    assert subscription.id == "sub_x" and subscription.status
    intent = client.retrieve_setup_intent("seti_x")
    assert intent.id == "seti_x" and intent.status


def test_a_failed_call_is_logged_with_structure_and_without_secrets(settings, owner, caplog) -> None:
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # discard port: nothing listens
    with (
        caplog.at_level(logging.WARNING, logger="apps.billing.stripe.gateway"),
        pytest.raises(gateway.StripeUnavailable) as raised,
    ):
        customers.customer_for(tenant=owner.tenant)
    assert raised.value.status_code == 503
    record = next(r for r in caplog.records if r.getMessage() == "stripe call failed")
    assert record.stripe_operation == "customer.create"
    assert record.stripe_error == "APIConnectionError"
    assert record.stripe_tenant_id == str(owner.tenant.pk)
    assert API_KEY not in repr(record.__dict__)
    assert not StripeCustomer.objects.exists()


def test_not_configured_is_a_503_error_not_a_crash(stripe_off) -> None:
    assert not gateway.is_configured()
    with pytest.raises(gateway.StripeNotConfigured) as raised:
        gateway.gateway()
    assert raised.value.status_code == 503
    assert raised.value.code == "stripe_not_configured"


def test_meter_events_carry_their_identifier_as_idempotency_key(stripe_on, owner, monkeypatch) -> None:
    from stripe.billing._meter_event_service import MeterEventService

    seen: list[tuple[str, Any]] = []
    original = MeterEventService.create

    def spy(self: Any, params: Any, options: Any = None) -> Any:
        seen.append((params["identifier"], options))
        return original(self, params, options)

    monkeypatch.setattr(MeterEventService, "create", spy)
    customer = customers.customer_for(tenant=owner.tenant)
    gateway.gateway().send_meter_event(
        event_name="gpucloud_x",
        customer_id=customer.customer_id,
        value=60,
        timestamp=datetime(2026, 11, 1, tzinfo=UTC),
        identifier="t:m:1793491200",
    )
    assert seen == [("t:m:1793491200", {"idempotency_key": "t:m:1793491200"})]
