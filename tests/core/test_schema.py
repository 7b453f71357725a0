"""The OpenAPI schema is valid and complete: every route of the URL configuration, its auth, the permission
and scope it needs, its errors in the one Error schema, Idempotency-Key on create endpoints, request
examples; the docs are served with local assets."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from apps.tenants.roles import PERM_SCOPE
from tests.core import routes
from tests.core.routes import PUBLIC, TENANT, classify

pytestmark = pytest.mark.django_db

ROUTES = routes.api_routes()
JSON_MEDIA = "application/vnd.oai.openapi+json"
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _handler(route: routes.Route, method: str) -> Any:
    return getattr(route.view_class, method.lower())


def test_served_as_json_by_query_or_accept_header_and_yaml_by_default() -> None:
    client = APIClient()
    by_query = client.get("/api/v1/schema/?format=json")
    by_header = client.get("/api/v1/schema/", HTTP_ACCEPT=JSON_MEDIA)
    default = client.get("/api/v1/schema/")

    assert by_query["Content-Type"].startswith(JSON_MEDIA)
    assert by_header["Content-Type"].startswith(JSON_MEDIA)
    assert by_query.json() == by_header.json()
    assert default["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(default.content)["paths"].keys() == by_query.json()["paths"].keys()


def test_valid_openapi_3(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 JSON schema
    assert schema["info"]["title"] == "gpucloud API"
    operation_ids = [op["operationId"] for _, _, op in _operations(schema)]
    assert len(operation_ids) == len(set(operation_ids))
    assert not [oid for oid in operation_ids if re.search(r"_\d+$", oid)], "colliding operationIds"


def test_every_route_and_method_is_documented(schema: dict[str, Any]) -> None:
    expected = {
        (route.openapi_path, method)
        for route in ROUTES
        if classify(route) != PUBLIC
        for method in route.endpoint_methods
    }
    documented = {(path, method) for path, method, _ in _operations(schema)}
    assert documented == expected, {
        "undocumented": sorted(expected - documented),
        "not routed": sorted(documented - expected),
    }
    public_paths = {route.openapi_path for route in ROUTES if classify(route) == PUBLIC}
    assert not public_paths & set(schema["paths"])


def test_security_schemes_and_every_operation_needs_auth(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["sessionAuth"]["type"] == "apiKey"
    assert schemes["sessionAuth"]["in"] == "cookie"
    for path, method, op in _operations(schema):
        assert op.get("security") == [{"bearerAuth": []}, {"sessionAuth": []}], (method, path)


def test_the_error_schema(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "fields"}


def test_every_operation_documents_its_errors(schema: dict[str, Any]) -> None:
    for path, method, op in _operations(schema):
        expected = {"400", "401", "403", "404", "429", "431"}
        if method in ("POST", "PATCH", "PUT"):
            expected.add("413")
        assert expected <= set(op["responses"]), (method, path, sorted(op["responses"]))
        for code in expected:
            content = op["responses"][code]["content"]["application/json"]
            assert content["schema"] == {"$ref": ERROR_REF}, (method, path, code)
        assert any(code.startswith("2") for code in op["responses"]), (method, path)


def test_tenant_operations_name_their_permission_and_scope(schema: dict[str, Any]) -> None:
    for route in ROUTES:
        if classify(route) != TENANT:
            continue
        for method in route.endpoint_methods:
            op = schema["paths"][route.openapi_path][method.lower()]
            perm = route.view_class.permission_map.get(method)  # type: ignore[union-attr]
            assert perm is not None, f"{method} {route}: add it to the view's permission_map"
            description = op.get("description", "")
            assert f"**Requires** permission `{perm.value}`" in description, (method, route.openapi_path)
            assert f"scope `{PERM_SCOPE[perm]}`" in description, (method, route.openapi_path)


def test_create_endpoints_take_an_idempotency_key(schema: dict[str, Any]) -> None:
    creates = 0
    for route in ROUTES:
        if "POST" not in route.endpoint_methods or classify(route) == PUBLIC:
            continue
        op = schema["paths"][route.openapi_path]["post"]
        headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
        idempotent = getattr(_handler(route, "POST"), "idempotent", False)
        if "201" in op["responses"]:
            creates += 1
            assert idempotent, f"POST {route}: creates (201) but its handler is not @idempotent"
        if idempotent:
            assert "Idempotency-Key" in headers, route
            assert headers["Idempotency-Key"].get("required", False) is False
            assert headers["Idempotency-Key"]["schema"]["type"] == "string"
            assert op["responses"]["422"]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}
        else:
            assert "Idempotency-Key" not in headers, f"POST {route}: documents a key it ignores"
    assert creates >= 5


def test_every_request_body_has_an_example(schema: dict[str, Any]) -> None:
    for path, method, op in _operations(schema):
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            examples = content.get("examples") or {}
            assert examples, (method, path, media)
            assert all(isinstance(e.get("value"), dict) for e in examples.values()), (method, path)


def test_list_operations_are_paginated_with_their_filters(schema: dict[str, Any]) -> None:
    members = schema["paths"]["/api/v1/tenants/{tenant_slug}/members"]["get"]
    ref = members["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"count", "next", "previous", "results"} <= set(page["properties"])
    assert {"limit", "offset", "ordering", "role"} <= {p["name"] for p in members["parameters"]}
    audit = schema["paths"]["/api/v1/tenants/{tenant_slug}/audit-events"]["get"]
    assert {"action", "actor", "since", "until", "target_type"} <= {p["name"] for p in audit["parameters"]}
    tenants = schema["paths"]["/api/v1/tenants"]["get"]
    assert "status" in {p["name"] for p in tenants["parameters"]}


def test_the_schema_is_generated_without_warnings() -> None:
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_docs_are_html_served_with_local_assets(path: str) -> None:
    response = APIClient().get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    external = re.findall(r"""(?:src|href)=["'](https?:)?//[^"']+""", html)
    assert not external, external
    assert not re.search(r"cdn\.jsdelivr|unpkg\.com|cdnjs|googleapis", html)
    assets = re.findall(r"/static/(drf_spectacular_sidecar/[^\"'\s]+)", html)
    assert assets
    for asset in assets:
        assert finders.find(asset), f"{asset} is not a static file"
    if path == "/api/v1/docs/":
        assert "/api/v1/schema/" in html
