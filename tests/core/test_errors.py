"""One error format for every 4xx and 5xx: {"error": {"code", "message", "fields"}}, JSON under /api/ even
for URLs no view answers; throttling per token, per user and per IP with Retry-After; request ids."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.throttling import AnonymousRateThrottle, PrincipalRateThrottle
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.core.urls_boom import SECRET_DETAIL
from tests.factories import make_token
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


# --- 400 -----------------------------------------------------------------------------------------------


def test_malformed_json_is_400(owner: Actor) -> None:
    client = owner.token_client()
    response = client.post(owner.url("/tokens"), '{"name": "ci",', content_type="application/json")
    error = assert_error(response, 400, "parse_error")
    assert "JSON" in error["message"]


def test_wrong_types_and_unknown_fields_are_400_naming_the_field(owner: Actor) -> None:
    client = owner.token_client()
    wrong_type = client.post(owner.url("/tokens"), {"name": "ci", "scopes": "instances:read"}, format="json")
    assert_error(wrong_type, 400, "invalid", field="scopes")
    unknown = client.post(owner.url("/invitations"), {"email": "a@example.com", "role": "member", "x": 1})
    assert_error(unknown, 400, "invalid", field="x")


def test_a_json_body_that_is_not_an_object_is_400(owner: Actor) -> None:
    response = owner.token_client().post(owner.url("/tokens"), "[1, 2]", content_type="application/json")
    assert_error(response, 400, "invalid")


# --- 401 / 403 / 404 / 405 -----------------------------------------------------------------------------


def test_missing_and_bad_credentials_are_401(owner: Actor) -> None:
    anonymous = APIClient().get("/api/v1/me")
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'

    bad = owner.token_client("gpc_bogus_secret").get("/api/v1/me")
    assert_error(bad, 401, "authentication_failed")

    malformed = APIClient()
    malformed.credentials(HTTP_AUTHORIZATION="Bearer two parts")
    assert_error(malformed.get("/api/v1/me"), 401, "authentication_failed")


def test_missing_scope_and_role_are_403_naming_what_is_missing(make_actor: Callable[..., Actor]) -> None:
    reader = make_actor(Role.OWNER, token_scopes=("instances:read",))
    error = assert_error(reader.token_client().get(reader.url("/members")), 403, "missing_scope")
    assert "tenant:read" in error["message"]

    viewer = make_actor(Role.VIEWER)
    error = assert_error(viewer.session_client().get(viewer.url("/invitations")), 403, "role_forbidden")
    assert "invitations.manage" in error["message"]


@pytest.mark.parametrize("accept", ["application/json", "text/html", "*/*"])
def test_unknown_api_path_is_a_json_404(accept: str) -> None:
    response = APIClient().get("/api/v1/nope", HTTP_ACCEPT=accept)
    assert response["Content-Type"].startswith("application/json")
    assert_error(response, 404, "not_found")


def test_unknown_tenant_is_a_json_404(owner: Actor) -> None:
    assert_error(owner.token_client().get("/api/v1/tenants/no-such-tenant/members"), 404, "not_found")
    assert_error(owner.token_client().get(owner.url(f"/members/{uuid.uuid4()}")), 404, "not_found")


def test_unknown_page_outside_the_api_stays_html() -> None:
    response = APIClient().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("put", "/api/v1/me"), ("delete", "/api/v1/tenants"), ("put", "{tenant}"), ("post", "{tenant}/members")],
)
def test_unsupported_method_is_405(method: str, suffix: str, owner: Actor) -> None:
    url = suffix.replace("{tenant}", owner.url())
    response = getattr(owner.token_client(), method)(url, {}, format="json")
    error = assert_error(response, 405, "method_not_allowed")
    assert method.upper() in error["message"]


# --- 413 -----------------------------------------------------------------------------------------------


@override_settings(API_MAX_BODY_BYTES=200)
def test_a_body_over_the_limit_is_413(owner: Actor) -> None:
    client = owner.token_client()
    small = client.post(owner.url("/tokens"), {"name": "ci", "scopes": ["instances:read"]}, format="json")
    assert small.status_code == 201

    big = client.post(owner.url("/tokens"), {"name": "x" * 300, "scopes": ["instances:read"]}, format="json")
    error = assert_error(big, 413, "request_too_large")
    assert "200 bytes" in error["message"]


def test_the_default_limit_is_in_force(owner: Actor) -> None:
    body = '{"name": "' + "x" * settings.API_MAX_BODY_BYTES + '"}'
    response = owner.token_client().post(owner.url("/tokens"), body, content_type="application/json")
    assert_error(response, 413, "request_too_large")


def test_an_invalid_content_length_is_400(owner: Actor) -> None:
    response = owner.token_client().post(
        owner.url("/tokens"), "{}", content_type="application/json", CONTENT_LENGTH="lots"
    )
    assert_error(response, 400, "request_too_large")


# --- 429 -----------------------------------------------------------------------------------------------


@pytest.fixture
def low_rates(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """principal 3/min and anon 2/min, counted in a cache namespace of this test alone.

    DRF reads the rates into the throttle classes at import time, so they are patched there too.
    """
    rates = {"principal": "3/min", "anon": "2/min"}
    for throttle in (PrincipalRateThrottle, AnonymousRateThrottle):
        monkeypatch.setattr(throttle, "THROTTLE_RATES", rates)
    caches = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-throttle-{uuid.uuid4().hex}"}}
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    with override_settings(CACHES=caches, REST_FRAMEWORK=rest_framework):
        yield  # a fresh key prefix is an empty cache, without flushing the Redis database others share


def _assert_throttled(response: Any) -> None:
    error = assert_error(response, 429, "throttled")
    seconds = int(response["Retry-After"])
    assert 1 <= seconds <= 60
    assert re.search(rf"Retry in {seconds} seconds", error["message"])


def test_a_token_is_throttled_with_retry_after(owner: Actor, low_rates: None) -> None:
    client = owner.token_client()
    for _ in range(3):
        assert client.get("/api/v1/me").status_code == 200
    _assert_throttled(client.get("/api/v1/me"))
    _assert_throttled(client.get(owner.url("/members")))  # one bucket for every endpoint


def test_each_token_and_the_session_have_their_own_bucket(owner: Actor, low_rates: None) -> None:
    _second, second_secret = make_token(user=owner.user, tenant=owner.tenant, name="second")
    first = owner.token_client()
    for _ in range(3):
        assert first.get("/api/v1/me").status_code == 200
    _assert_throttled(first.get("/api/v1/me"))

    second = owner.token_client(second_secret)
    assert second.get("/api/v1/me").status_code == 200
    session = owner.session_client()
    for _ in range(3):
        assert session.get("/api/v1/me").status_code == 200
    _assert_throttled(session.get("/api/v1/me"))


def test_users_have_their_own_buckets(make_actor: Callable[..., Actor], low_rates: None) -> None:
    ada, bob = make_actor(), make_actor()
    for _ in range(3):
        ada.session_client().get("/api/v1/me")
    _assert_throttled(ada.session_client().get("/api/v1/me"))
    assert bob.session_client().get("/api/v1/me").status_code == 200


def test_anonymous_callers_are_throttled_by_ip(low_rates: None) -> None:
    client = APIClient()
    for _ in range(2):
        assert client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.7").status_code == 200
    _assert_throttled(client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.7"))
    # The schema renders YAML and the docs HTML, but their errors are in the one JSON format too.
    for path in ("/api/v1/schema/?format=json", "/api/v1/docs/", "/api/v1/redoc/"):
        throttled = client.get(path, REMOTE_ADDR="203.0.113.7")
        assert throttled["Content-Type"] == "application/json", path
        _assert_throttled(throttled)
    assert client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.8").status_code == 200


def test_a_forged_forwarded_for_does_not_escape_the_anonymous_throttle(low_rates: None) -> None:
    """Without trusted proxies (TRUSTED_PROXY_HOPS = 0) X-Forwarded-For is the caller's own claim: a new one
    on every request is still the same caller."""
    client = APIClient()
    for n in range(2):
        forged = {"REMOTE_ADDR": "203.0.113.7", "HTTP_X_FORWARDED_FOR": f"198.51.100.{n}"}
        assert client.get("/api/v1/schema/", **forged).status_code == 200
    _assert_throttled(
        client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="10.9.9.9")
    )


@override_settings(TRUSTED_PROXY_HOPS=1)
def test_behind_a_trusted_proxy_anonymous_callers_are_throttled_by_their_own_address(low_rates: None) -> None:
    client = APIClient()
    proxy = "10.0.0.2"
    for _ in range(2):
        assert (
            client.get("/api/v1/schema/", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code
            == 200
        )
    _assert_throttled(client.get("/api/v1/schema/", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.7"))
    # Another client behind the same proxy has its own budget.
    assert (
        client.get("/api/v1/schema/", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code
        == 200
    )


# --- 500 -----------------------------------------------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.core.urls_boom")
@pytest.mark.parametrize("path", ["/api/v1/test-boom", "/api/v1/test-boom-plain"])
def test_an_unexpected_error_is_a_json_500_without_details(path: str) -> None:
    client = APIClient(raise_request_exception=False)

    response = client.get(path, HTTP_X_REQUEST_ID="boom-request-0001")

    assert response["Content-Type"].startswith("application/json")
    error = assert_error(response, 500, "server_error")
    assert error["fields"] == {}
    text = response.content.decode()
    assert SECRET_DETAIL not in text
    assert "Traceback" not in text and "RuntimeError" not in text and "KeyError" not in text
    assert response["X-Request-ID"] == "boom-request-0001"


@override_settings(ROOT_URLCONF="tests.core.urls_boom")
def test_an_unexpected_error_outside_the_api_is_an_html_500() -> None:
    response = APIClient(raise_request_exception=False).get("/test-boom-page")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert SECRET_DETAIL not in response.content.decode()


# --- request ids ---------------------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed(owner: Actor) -> None:
    response = owner.token_client().get("/api/v1/me", HTTP_X_REQUEST_ID="client-req-12345")
    assert response["X-Request-ID"] == "client-req-12345"


@pytest.mark.parametrize("incoming", [None, "short", "has spaces in it", "x" * 65, "semi;colon-123456"])
def test_a_missing_or_unsafe_request_id_is_replaced(incoming: str | None, owner: Actor) -> None:
    extra = {"HTTP_X_REQUEST_ID": incoming} if incoming is not None else {}
    response = owner.token_client().get("/api/v1/me", **extra)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert response["X-Request-ID"] != incoming


def test_errors_carry_a_request_id_too() -> None:
    response = APIClient().get("/api/v1/nope")
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_the_request_id_reaches_the_audit_log(owner: Actor) -> None:
    response = owner.token_client().post(
        owner.url("/tokens"),
        {"name": "ci", "scopes": ["instances:read"]},
        format="json",
        HTTP_X_REQUEST_ID="trace-me-0000001",
    )
    assert response.status_code == 201
    event = AuditEvent.objects.get(action="token.create", target_id=response.json()["id"])
    assert event.request_id == "trace-me-0000001"
