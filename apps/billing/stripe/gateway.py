"""The only module that imports the `stripe` SDK (Saleor's stripe_api.py is the model).

It pins the API version, turns every SDK object into a small dataclass, sends deterministic Idempotency-Keys
on every create so a retry after a crash never makes a second object, and logs each failed call with
structured fields (operation, error class, HTTP status, Stripe's code and request id; never the key, the
webhook secret or a request body). Callers see two errors: StripeNotConfigured (no secret key: the feature
is off, the API answers 503 stripe_not_configured) and StripeUnavailable (the call failed; retry later).
`STRIPE_API_BASE` points the client at stripe-mock in tests and in `make run`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from rest_framework import status

from apps.core.errors import DomainError

logger = logging.getLogger(__name__)

# The API version every request is made with; stripe-python 16.1 is generated for it. Change both together.
API_VERSION = "2026-10-28.endive"
WEBHOOK_TOLERANCE_SECONDS = 300


class StripeNotConfigured(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "stripe_not_configured"

    def __init__(self, message: str = "Payments are not configured on this installation.") -> None:
        super().__init__(message)


class StripeUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "stripe_unavailable"


class InvalidWebhook(Exception):
    """The payload's signature does not verify (forged, stale or malformed)."""


# --- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Customer:
    id: str


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    mode: str
    status: str | None
    payment_status: str | None
    amount_total: int | None  # cents
    customer_id: str | None
    setup_intent_id: str | None
    metadata: dict[str, str]
    payment_intent_id: str | None = None


@dataclass(frozen=True)
class PortalSession:
    id: str
    url: str


@dataclass(frozen=True)
class Meter:
    id: str
    event_name: str
    price_id: str


@dataclass(frozen=True)
class MeterEventSent:
    identifier: str
    event_name: str


@dataclass(frozen=True)
class MeterEventSummary:
    start: datetime
    end: datetime
    aggregated_value: float


@dataclass(frozen=True)
class Invoice:
    id: str
    customer_id: str | None
    status: str | None  # draft, open, paid, uncollectible, void
    subscription_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InvoiceItem:
    id: str
    amount: int  # cents
    metadata: dict[str, str]


@dataclass(frozen=True)
class Subscription:
    id: str
    customer_id: str | None
    status: str


@dataclass(frozen=True)
class SetupIntent:
    id: str
    customer_id: str | None
    status: str
    payment_method_id: str | None


@dataclass(frozen=True)
class Refund:
    id: str
    amount: int  # cents
    status: str | None  # pending, requires_action, succeeded, failed, canceled
    charge_id: str | None


@dataclass(frozen=True)
class Charge:
    id: str
    amount: int  # cents
    amount_refunded: int  # cents, all refunds so far
    payment_intent_id: str | None
    customer_id: str | None
    refunds: tuple[Refund, ...]  # every refund of the charge (all pages)


@dataclass(frozen=True)
class Dispute:
    id: str
    amount: int  # cents
    status: str  # needs_response, under_review, won, lost, warning_*, appeal_*, prevented
    charge_id: str | None
    payment_intent_id: str | None


@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    object_id: str
    livemode: bool
    created: datetime | None


def _id_of(value: Any) -> str | None:
    """An expandable field: an id string, an expanded object, or null."""
    if value is None or isinstance(value, str):
        return value
    found = _attr(value, "id")
    return str(found) if found is not None else None


def _attr(obj: Any, name: str) -> Any:
    """A field of an SDK object (or a plain dict), None when absent."""
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def _plain(obj: Any) -> dict[str, str]:
    if obj is None:
        return {}
    raw = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return {str(key): str(value) for key, value in raw.items()}


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _from_epoch(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value is not None else None


class StripeGateway:
    """A configured client. Build it with `gateway()`; every method is one Stripe API call."""

    def __init__(self, *, secret_key: str, api_base: str = "", timeout: float = 10.0, retries: int = 0):
        base = {"api": api_base} if api_base else None
        self._client = stripe.StripeClient(
            secret_key,
            stripe_version=API_VERSION,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    # -- plumbing ------------------------------------------------------------------------------------------

    def _call(self, operation: str, fn: Any, *args: Any, **context: Any) -> Any:
        try:
            return fn(*args)
        except stripe.StripeError as exc:
            logger.warning(
                "stripe call failed",
                extra={
                    "stripe_operation": operation,
                    "stripe_error": type(exc).__name__,
                    "stripe_http_status": exc.http_status,
                    "stripe_code": exc.code,
                    "stripe_request_id": exc.request_id,
                    **{f"stripe_{key}": value for key, value in context.items()},
                },
            )
            raise StripeUnavailable(
                f"Stripe did not complete {operation} ({type(exc).__name__}); try again later.",
                details={"operation": operation, "stripe_code": exc.code},
            ) from exc

    @staticmethod
    def _opts(idempotency_key: str | None) -> Any:
        return {"idempotency_key": idempotency_key} if idempotency_key else None

    # -- customers, checkout, portal ----------------------------------------------------------------------

    def create_customer(
        self, *, tenant_id: str, name: str, email: str | None, idempotency_key: str
    ) -> Customer:
        params: dict[str, Any] = {"name": name, "metadata": {"tenant_id": tenant_id}}
        if email:
            params["email"] = email
        obj = self._call(
            "customer.create",
            self._client.v1.customers.create,
            params,
            self._opts(idempotency_key),
            tenant_id=tenant_id,
        )
        return Customer(id=obj.id)

    def create_setup_checkout(
        self, *, customer_id: str, currency: str, success_url: str, cancel_url: str, tenant_id: str
    ) -> CheckoutSession:
        params = {
            "mode": "setup",
            "customer": customer_id,
            "currency": currency,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": {"tenant_id": tenant_id, "purpose": "card_setup"},
        }
        obj = self._call(
            "checkout.session.create", self._client.v1.checkout.sessions.create, params, None, mode="setup"
        )
        return self._checkout(obj)

    def create_payment_checkout(
        self,
        *,
        customer_id: str,
        currency: str,
        amount_cents: int,
        product_name: str,
        success_url: str,
        cancel_url: str,
        tenant_id: str,
        idempotency_key: str | None = None,
    ) -> CheckoutSession:
        metadata = {"tenant_id": tenant_id, "purpose": "topup", "amount_cents": str(amount_cents)}
        params = {
            "mode": "payment",
            "customer": customer_id,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount_cents,
                        "product_data": {"name": product_name},
                    },
                }
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        obj = self._call(
            "checkout.session.create",
            self._client.v1.checkout.sessions.create,
            params,
            self._opts(idempotency_key),
            mode="payment",
        )
        return self._checkout(obj)

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        obj = self._call("checkout.session.retrieve", self._client.v1.checkout.sessions.retrieve, session_id)
        return self._checkout(obj)

    @staticmethod
    def _checkout(obj: Any) -> CheckoutSession:
        return CheckoutSession(
            id=obj.id,
            url=_attr(obj, "url"),
            mode=obj.mode,
            status=_attr(obj, "status"),
            payment_status=_attr(obj, "payment_status"),
            amount_total=_attr(obj, "amount_total"),
            customer_id=_id_of(_attr(obj, "customer")),
            setup_intent_id=_id_of(_attr(obj, "setup_intent")),
            metadata=_plain(_attr(obj, "metadata")),
            payment_intent_id=_id_of(_attr(obj, "payment_intent")),
        )

    def checkout_session_of_payment_intent(self, payment_intent_id: str) -> str | None:
        """The id of the Checkout Session that created `payment_intent_id`, or None."""
        page = self._call(
            "checkout.session.list",
            self._client.v1.checkout.sessions.list,
            {"payment_intent": payment_intent_id, "limit": 1},
            payment_intent=payment_intent_id,
        )
        for obj in page.data:
            if _id_of(_attr(obj, "payment_intent")) in (None, payment_intent_id):
                return str(obj.id)
        return None

    def create_portal_session(self, *, customer_id: str, return_url: str) -> PortalSession:
        obj = self._call(
            "billing_portal.session.create",
            self._client.v1.billing_portal.sessions.create,
            {"customer": customer_id, "return_url": return_url},
        )
        return PortalSession(id=obj.id, url=obj.url)

    # -- usage export -------------------------------------------------------------------------------------

    def create_meter_with_price(
        self,
        *,
        rate_key: str,
        event_name: str,
        display_name: str,
        nickname: str,
        currency: str,
        unit_amount_cents: Any,
    ) -> Meter:
        """One Billing Meter (sum of `value` per customer) and a monthly metered price on it.
        `unit_amount_cents` is a Decimal: cents per unit (second or GiB-second), at most 12 places.
        `rate_key` (meter key and price) makes the Idempotency-Keys: one meter and price per rate."""
        meter = self._call(
            "billing.meter.create",
            self._client.v1.billing.meters.create,
            {
                "display_name": display_name,
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                "value_settings": {"event_payload_key": "value"},
            },
            self._opts(f"gpucloud-meter:{rate_key}"),
            rate_key=rate_key,
        )
        price = self._call(
            "price.create",
            self._client.v1.prices.create,
            {
                "currency": currency,
                "unit_amount_decimal": str(unit_amount_cents),
                "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
                "product_data": {"name": display_name},
                "nickname": nickname,
                "metadata": {"rate": rate_key},
            },
            self._opts(f"gpucloud-price:{rate_key}"),
            rate_key=rate_key,
        )
        return Meter(id=meter.id, event_name=meter.event_name, price_id=price.id)

    def send_meter_event(
        self, *, event_name: str, customer_id: str, value: int, timestamp: datetime, identifier: str
    ) -> MeterEventSent:
        """The identifier is Stripe's dedup key for the event and also the Idempotency-Key of the request."""
        obj = self._call(
            "billing.meter_event.create",
            self._client.v1.billing.meter_events.create,
            {
                "event_name": event_name,
                "identifier": identifier,
                "timestamp": _epoch(timestamp),
                "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            },
            self._opts(identifier),
            identifier=identifier,
        )
        return MeterEventSent(identifier=identifier, event_name=obj.event_name)

    def meter_event_summaries(
        self, *, meter_id: str, customer_id: str, start: datetime, end: datetime
    ) -> list[MeterEventSummary]:
        page = self._call(
            "billing.meter.event_summaries.list",
            self._client.v1.billing.meters.event_summaries.list,
            meter_id,
            {"customer": customer_id, "start_time": _epoch(start), "end_time": _epoch(end), "limit": 100},
            meter_id=meter_id,
        )
        out = []
        for item in page.auto_paging_iter():
            item_start, item_end = _from_epoch(item.start_time), _from_epoch(item.end_time)
            assert item_start is not None and item_end is not None
            out.append(MeterEventSummary(item_start, item_end, float(item.aggregated_value)))
        return out

    # -- invoices we collect -------------------------------------------------------------------------------

    def create_invoice(
        self,
        *,
        customer_id: str,
        currency: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> Invoice:
        """A draft invoice charged automatically (the customer's default payment method). It takes only the
        items created for it (`pending_invoice_items_behavior=exclude`) and does not advance on its own
        until it is finalized."""
        obj = self._call(
            "invoice.create",
            self._client.v1.invoices.create,
            {
                "customer": customer_id,
                "currency": currency,
                "collection_method": "charge_automatically",
                "auto_advance": False,
                "pending_invoice_items_behavior": "exclude",
                "description": description,
                "metadata": metadata,
            },
            self._opts(idempotency_key),
            idempotency_key=idempotency_key,
        )
        return self._invoice(obj)

    def find_invoice(
        self, *, customer_id: str, created_since: datetime, metadata_key: str, metadata_value: str
    ) -> Invoice | None:
        """The customer's invoice created since then whose metadata holds the value: one an earlier attempt
        created before it could record the id (the Idempotency-Key only helps for 24 hours)."""
        page = self._call(
            "invoice.list",
            self._client.v1.invoices.list,
            {"customer": customer_id, "created": {"gte": _epoch(created_since)}, "limit": 100},
            customer_id=customer_id,
        )
        for obj in page.auto_paging_iter():
            if _plain(_attr(obj, "metadata")).get(metadata_key) == metadata_value:
                return self._invoice(obj)
        return None

    def invoice_items(self, invoice_id: str) -> list[InvoiceItem]:
        page = self._call(
            "invoiceitem.list",
            self._client.v1.invoice_items.list,
            {"invoice": invoice_id, "limit": 100},
            invoice_id=invoice_id,
        )
        return [
            InvoiceItem(
                id=obj.id, amount=int(_attr(obj, "amount") or 0), metadata=_plain(_attr(obj, "metadata"))
            )
            for obj in page.auto_paging_iter()
        ]

    def create_invoice_item(
        self,
        *,
        customer_id: str,
        invoice_id: str,
        currency: str,
        amount_cents: int,
        description: str,
        period_start: datetime,
        period_end: datetime,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> InvoiceItem:
        """One line of a draft invoice, for an amount in cents we computed (negative for credits)."""
        obj = self._call(
            "invoiceitem.create",
            self._client.v1.invoice_items.create,
            {
                "customer": customer_id,
                "invoice": invoice_id,
                "currency": currency,
                "amount": amount_cents,
                "description": description,
                "period": {"start": _epoch(period_start), "end": _epoch(period_end)},
                "metadata": metadata,
            },
            self._opts(idempotency_key),
            idempotency_key=idempotency_key,
        )
        return InvoiceItem(id=obj.id, amount=int(_attr(obj, "amount") or 0), metadata=metadata)

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> Invoice:
        """Finalize the draft with automatic advancement: Stripe then charges the customer's payment method
        and retries failures on its own schedule."""
        obj = self._call(
            "invoice.finalize",
            self._client.v1.invoices.finalize_invoice,
            invoice_id,
            {"auto_advance": True},
            self._opts(idempotency_key),
            invoice_id=invoice_id,
        )
        return self._invoice(obj)

    # -- objects webhooks point at ------------------------------------------------------------------------

    def retrieve_invoice(self, invoice_id: str) -> Invoice:
        obj = self._call("invoice.retrieve", self._client.v1.invoices.retrieve, invoice_id)
        return self._invoice(obj)

    @staticmethod
    def _invoice(obj: Any) -> Invoice:
        details = _attr(_attr(obj, "parent"), "subscription_details")
        return Invoice(
            id=obj.id,
            customer_id=_id_of(_attr(obj, "customer")),
            status=_attr(obj, "status"),
            subscription_id=_id_of(_attr(details, "subscription")),
            metadata=_plain(_attr(obj, "metadata")),
        )

    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        obj = self._call("subscription.retrieve", self._client.v1.subscriptions.retrieve, subscription_id)
        return Subscription(id=obj.id, customer_id=_id_of(_attr(obj, "customer")), status=obj.status)

    def retrieve_setup_intent(self, setup_intent_id: str) -> SetupIntent:
        obj = self._call("setup_intent.retrieve", self._client.v1.setup_intents.retrieve, setup_intent_id)
        return SetupIntent(
            id=obj.id,
            customer_id=_id_of(_attr(obj, "customer")),
            status=obj.status,
            payment_method_id=_id_of(_attr(obj, "payment_method")),
        )

    def retrieve_charge(self, charge_id: str) -> Charge:
        """The charge and all its refunds (the charge embeds only the latest ones, so they are listed)."""
        obj = self._call("charge.retrieve", self._client.v1.charges.retrieve, charge_id, charge_id=charge_id)
        page = self._call(
            "refund.list",
            self._client.v1.refunds.list,
            {"charge": obj.id, "limit": 100},
            charge_id=charge_id,
        )
        refunds = tuple(self._refund(item) for item in page.auto_paging_iter())
        return Charge(
            id=obj.id,
            amount=int(_attr(obj, "amount") or 0),
            amount_refunded=int(_attr(obj, "amount_refunded") or 0),
            payment_intent_id=_id_of(_attr(obj, "payment_intent")),
            customer_id=_id_of(_attr(obj, "customer")),
            refunds=refunds,
        )

    def retrieve_refund(self, refund_id: str) -> Refund:
        obj = self._call("refund.retrieve", self._client.v1.refunds.retrieve, refund_id, refund_id=refund_id)
        return self._refund(obj)

    @staticmethod
    def _refund(obj: Any) -> Refund:
        return Refund(
            id=obj.id,
            amount=int(_attr(obj, "amount") or 0),
            status=_attr(obj, "status"),
            charge_id=_id_of(_attr(obj, "charge")),
        )

    def retrieve_dispute(self, dispute_id: str) -> Dispute:
        obj = self._call(
            "dispute.retrieve", self._client.v1.disputes.retrieve, dispute_id, dispute_id=dispute_id
        )
        return Dispute(
            id=obj.id,
            amount=int(_attr(obj, "amount") or 0),
            status=str(_attr(obj, "status") or ""),
            charge_id=_id_of(_attr(obj, "charge")),
            payment_intent_id=_id_of(_attr(obj, "payment_intent")),
        )


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def gateway() -> StripeGateway:
    """The client for the configured account; StripeNotConfigured without STRIPE_SECRET_KEY."""
    if not is_configured():
        raise StripeNotConfigured()
    return StripeGateway(
        secret_key=str(settings.STRIPE_SECRET_KEY),
        api_base=str(settings.STRIPE_API_BASE or ""),
        timeout=settings.STRIPE_TIMEOUT_SECONDS,
    )


def parse_webhook(payload: bytes, signature_header: str | None, secret: str) -> WebhookEvent:
    """Verify the Stripe-Signature header on the raw body (300 s tolerance) and read the event."""
    try:
        event = stripe.Webhook.construct_event(
            payload, signature_header, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, ValueError) as exc:
        logger.warning("stripe webhook refused", extra={"stripe_error": type(exc).__name__})
        raise InvalidWebhook(str(exc)) from exc
    data_object = _attr(_attr(event, "data"), "object")
    return WebhookEvent(
        id=event.id,
        type=event.type,
        object_id=str(_attr(data_object, "id") or ""),
        livemode=bool(_attr(event, "livemode")),
        created=_from_epoch(_attr(event, "created")),
    )
