"""apps/core/request_limits.py and apps/core/parsers.py in use: what the limits let through, their edges, that
they are settings, and Django's own refusals in the error envelope under /api/."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.conftest import Actor
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


def test_a_repeated_parameter_is_refused_unless_the_filter_takes_several(owner: Actor) -> None:
    client = owner.token_client()
    several = client.get(owner.url("/instances") + "?state=running&state=stopped")
    assert several.status_code == 200, several.content
    error = assert_error(
        client.get(owner.url("/instances") + "?limit=1&limit=2"), 400, "invalid", field="limit"
    )
    assert error["message"] == 'The query parameter "limit" is given 2 times; it takes one value.'


def test_percent_encoded_utf8_and_plus_signs_are_ordinary_text(owner: Actor) -> None:
    response = owner.token_client().get(owner.url("/audit-events") + "?actor=%C3%A9t%C3%A9+x%40example.com")
    assert response.status_code == 200, response.content


@override_settings(REQUEST_QUERY_MAX_PARAMS=3, REQUEST_QUERY_MAX_VALUE_LENGTH=5, REQUEST_QUERY_MAX_LENGTH=40)
def test_query_limits_at_their_edges(owner: Actor) -> None:
    client = owner.token_client()
    assert client.get("/api/v1/me?a=1&b=12345&c=3").status_code == 200
    assert_error(client.get("/api/v1/me?a=1&b=2&c=3&d=4"), 400, "invalid")
    assert_error(client.get("/api/v1/me?b=123456"), 400, "invalid", field="b")
    assert_error(client.get("/api/v1/me?b=1&" + "c" * 40), 400, "invalid")


@override_settings(REQUEST_HEADER_MAX_LENGTH=100)
def test_header_limit_at_its_edge_and_tabs_are_whitespace(owner: Actor) -> None:
    client = owner.token_client()
    assert client.get("/api/v1/me", HTTP_X_TRACE="\t" + "a" * 99).status_code == 200
    error = assert_error(
        client.get("/api/v1/me", HTTP_X_TRACE="a" * 101), 431, "header_too_large", field="X-Trace"
    )
    assert error["message"] == "The X-Trace header has 101 characters; at most 100 are allowed."


@override_settings(REQUEST_JSON_MAX_DEPTH=2, REQUEST_JSON_MAX_KEYS_PER_OBJECT=2)
def test_json_limits_are_settings(owner: Actor) -> None:
    client = owner.token_client()
    url = owner.url("/tokens")
    deep = client.generic("POST", url, '{"name": "ci", "scopes": [["x"]]}', content_type="application/json")
    assert_error(deep, 400, "invalid")
    assert "nest more than 2 levels" in deep.json()["error"]["message"]
    keys = client.generic(
        "POST", url, '{"name": "ci", "scopes": [], "x": 1}', content_type="application/json"
    )
    assert "3 keys" in assert_error(keys, 400, "invalid")["message"]
    fine = client.generic(
        "POST", url, '{"name": "ci", "scopes": ["tenant:read"]}', content_type="application/json"
    )
    assert fine.status_code == 201, fine.content


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/json; charset=UTF8"]
)
def test_utf8_json_is_accepted_however_the_charset_is_spelled(owner: Actor, content_type: str) -> None:
    body = '{"name": "café ☕", "scopes": ["instances:read"]}'.encode()
    response = owner.token_client().generic("POST", owner.url("/tokens"), body, content_type=content_type)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "café ☕"


def test_an_error_names_the_field_path(owner: Actor) -> None:
    body = '{"name": "ci", "scopes": ["a", "' + "x" * 70_000 + '"]}'
    response = owner.token_client().generic(
        "POST", owner.url("/tokens"), body, content_type="application/json"
    )
    error = assert_error(response, 400, "invalid", field="scopes.1")
    assert error["message"] == "scopes.1: a string of 70000 characters; at most 65536 are allowed."


def test_django_refusals_under_the_api_are_in_the_envelope() -> None:
    """Django's own SuspiciousOperation (here a Host outside ALLOWED_HOSTS) answers the envelope, not HTML."""
    assert_error(APIClient().get("/api/v1/me", HTTP_HOST="evil.example"), 400, "invalid")
    page = APIClient().get("/accounts/login/", HTTP_HOST="evil.example")
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")
