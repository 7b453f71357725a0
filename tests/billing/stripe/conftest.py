"""Fixtures for the Stripe tests: a real stripe-mock process (scripts/stripe_mock.sh, started by `make test`
or here when not running; a stripe-mock that cannot be started fails the tests, never skips them), settings
pointing the adapter at it, a private stripe-mock that tests stop and start, and Stripe-style signing."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from apps.billing.stripe import gateway

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "stripe_mock.sh"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
API_KEY = "sk_test_123"


def answers(base_url: str) -> bool:
    request = urllib.request.Request(  # noqa: S310 (a local http URL)
        f"{base_url}/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (a local URL)
            return response.status == 200
    except OSError:
        return False


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=900, check=False
    )


@pytest.fixture(scope="session")
def stripe_mock_url() -> str:
    url = _script("url").stdout.strip()
    if not answers(url):
        started = _script("start")
        if started.returncode != 0 or not answers(url):
            where = "CI=true: " if os.environ.get("CI") == "true" else ""
            pytest.fail(
                f"{where}stripe-mock is not running on {url} and could not be started "
                f"(`make stripe-mock`; it is built by `make sandbox-build`):\n{started.stderr[-2000:]}",
                pytrace=False,
            )
    return url


@pytest.fixture
def stripe_on(settings: Any, stripe_mock_url: str) -> str:
    """Stripe configured against the shared stripe-mock."""
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = stripe_mock_url
    return stripe_mock_url


@pytest.fixture
def stripe_off(settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_WEBHOOK_SECRET = ""


def _binary() -> str:
    out = subprocess.run(
        ["bash", "-c", f'. "{REPO_ROOT}/sandbox/common.sh"; echo "$STRIPE_MOCK_BIN/stripe-mock"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivateStripeMock:
    """A stripe-mock of this test alone on its own port: down until started, stoppable at will."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_binary(), "-http-addr", f"127.0.0.1:{self.port}", "-https-addr", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            if answers(self.url):
                return
            time.sleep(0.05)
        pytest.fail(f"private stripe-mock did not answer on {self.url}", pytrace=False)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_stripe_mock(settings: Any, stripe_mock_url: str) -> Iterator[PrivateStripeMock]:
    """Stripe configured against a private stripe-mock that is NOT running yet (call .start())."""
    mock = PrivateStripeMock(port=_free_port())
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = mock.url
    yield mock
    mock.stop()


@dataclass
class SentLog:
    identifiers: list[str] = field(default_factory=list)


@pytest.fixture
def sent_meter_events(monkeypatch: pytest.MonkeyPatch) -> SentLog:
    """Records the identifier of every meter event the adapter sent successfully (the real call runs)."""
    log = SentLog()
    original = gateway.StripeGateway.send_meter_event

    def recording(self: gateway.StripeGateway, **kwargs: Any) -> gateway.MeterEventSent:
        result = original(self, **kwargs)
        log.identifiers.append(kwargs["identifier"])
        return result

    monkeypatch.setattr(gateway.StripeGateway, "send_meter_event", recording)
    return log


def sign(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header exactly as Stripe computes it: t=<ts>,v1=<hex HMAC-SHA256(secret,
    "<ts>.<payload>")>."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def event_payload(event_type: str, object_id: str, *, event_id: str, obj: str) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": gateway.API_VERSION,
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": {"id": object_id, "object": obj}},
        }
    ).encode()


@pytest.fixture
def post_event(api_client: Any, django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST a payload to the webhook (signed like Stripe unless `signature` is given); the processing task
    queued on commit runs (eagerly) as it would after the request's commit."""

    def post(payload: bytes, signature: str | None = None) -> Any:
        headers = {"HTTP_STRIPE_SIGNATURE": sign(payload) if signature is None else signature}
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.generic(
                "POST", "/api/v1/stripe/webhook", payload, content_type="application/json", **headers
            )

    return post


@pytest.fixture
def stripe_says(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """stripe_says(object_id, **fields): re-fetching object_id returns stripe-mock's real response with
    `fields` replaced. Returns the list of object ids re-fetched (to count calls)."""
    overrides: dict[str, dict[str, Any]] = {}
    fetched: list[str] = []
    for name in (
        "retrieve_checkout_session",
        "retrieve_invoice",
        "retrieve_subscription",
        "retrieve_setup_intent",
        "retrieve_charge",
        "retrieve_refund",
        "retrieve_dispute",
    ):
        original = getattr(gateway.StripeGateway, name)

        def patched(self: Any, object_id: str, _original: Any = original) -> Any:
            fetched.append(object_id)
            real = _original(self, object_id)
            return dataclasses.replace(real, **overrides.get(object_id, {}))

        monkeypatch.setattr(gateway.StripeGateway, name, patched)

    def say(object_id: str | None = None, **fields: Any) -> list[str]:
        if object_id is not None:
            overrides[object_id] = fields
        return fetched

    return say


@pytest.fixture
def stripe_sessions_of(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """{payment_intent_id: session_id}: looking up the Checkout Session of a PaymentIntent makes the real
    call to stripe-mock and answers what a real account would (stripe-mock's list is a fixture)."""
    sessions: dict[str, str] = {}
    original = gateway.StripeGateway.checkout_session_of_payment_intent

    def patched(self: Any, payment_intent_id: str) -> str | None:
        original(self, payment_intent_id)
        return sessions.get(payment_intent_id)

    monkeypatch.setattr(gateway.StripeGateway, "checkout_session_of_payment_intent", patched)
    return sessions


def postpaid(tenant: Any, credit_limit: str = "1000.00") -> Any:
    """Switch the tenant to postpaid (invoiced monthly in arrears: its invoices are charged through
    Stripe)."""
    from apps.billing.models import BillingAccount

    BillingAccount.objects.update_or_create(
        tenant=tenant, defaults={"mode": "postpaid", "credit_limit": credit_limit}
    )
    return tenant


@dataclass
class StripeCalls:
    """Every call of the collection to the gateway, with its keyword arguments (the real calls run)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]


@pytest.fixture
def invoice_calls(monkeypatch: pytest.MonkeyPatch) -> StripeCalls:
    log = StripeCalls()
    for name in ("create_invoice", "create_invoice_item", "finalize_invoice", "find_invoice"):
        original = getattr(gateway.StripeGateway, name)

        def recording(
            self: Any, *args: Any, _name: str = name, _original: Any = original, **kwargs: Any
        ) -> Any:
            result = _original(self, *args, **kwargs)
            log.calls.append((_name, {**kwargs, **({"invoice_id": args[0]} if args else {})}))
            return result

        monkeypatch.setattr(gateway.StripeGateway, name, recording)
    return log
