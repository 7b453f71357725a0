"""What the fuzzer (tests/fuzz) found the schema claiming falsely, each pinned: the schema must describe the
responses the API really gives and the input it really refuses."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
T = "/api/v1/tenants/{tenant_slug}"


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _params(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}


@pytest.mark.parametrize(
    "path",
    [f"{T}/tokens/{{token_id}}", f"{T}/invitations/{{invitation_id}}", f"{T}/access-keys/{{access_key_id}}"],
)
def test_revoking_deletes_document_the_200_and_body_they_answer(schema, path):
    responses = schema["paths"][path]["delete"]["responses"]
    assert "200" in responses and "204" not in responses
    assert "application/json" in responses["200"]["content"]


def test_deletes_and_changes_document_409(schema):
    assert "409" in schema["paths"][f"{T}/instances/{{instance_id}}"]["delete"]["responses"]
    assert "409" in schema["paths"][f"{T}/volumes/{{volume_id}}"]["patch"]["responses"]


def test_strict_request_bodies_forbid_unknown_properties(schema):
    body = schema["paths"][f"{T}/tokens"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert _resolve(schema, body)["additionalProperties"] is False


def test_usage_report_names_from_and_to(schema):
    response = schema["paths"][f"{T}/billing/usage"]["get"]["responses"]["200"]
    props = _resolve(schema, response["content"]["application/json"]["schema"])["properties"]
    assert {"from", "to"} <= set(props) and not {"start", "end"} & set(props)


def test_invoice_month_is_a_month_not_a_date(schema):
    month = schema["components"]["schemas"]["Invoice"]["properties"]["month"]
    assert month.get("format") != "date"
    assert month["pattern"] == r"^\d{4}-\d{2}$"


def test_invoice_html_is_one_document_not_a_page(schema):
    op = schema["paths"][f"{T}/billing/invoices/{{invoice_id}}/html"]["get"]
    assert not {"limit", "offset", "ordering"} & set(_params(op))
    assert "schema" not in op["responses"]["200"]["content"]["text/html"] or (
        "results" not in op["responses"]["200"]["content"]["text/html"]["schema"].get("properties", {})
    )


def test_portal_url_is_not_promised_to_be_a_valid_uri(schema):
    response = schema["paths"][f"{T}/billing/portal"]["post"]["responses"]["200"]
    prop = _resolve(schema, response["content"]["application/json"]["schema"])["properties"]["portal_url"]
    assert "format" not in prop


def test_pagination_parameters_have_bounds(schema):
    params = _params(schema["paths"][f"{T}/instances"]["get"])
    assert params["limit"]["schema"]["minimum"] == 1
    assert params["offset"]["schema"]["minimum"] == 0
    assert params["offset"]["schema"]["maximum"] == 2**31 - 1


def test_secrets_shown_once_are_nullable_for_idempotent_replays(schema):
    token = schema["components"]["schemas"]["ApiTokenCreated"]["properties"]["token"]
    assert token.get("nullable") is True
