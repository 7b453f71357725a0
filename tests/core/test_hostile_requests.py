"""Hostile requests against every write endpoint of the OpenAPI schema (docs/api.md "Limits").

The operations come from the schema drf-spectacular generates, so an endpoint is covered the day it is added:
every POST, PUT, PATCH and DELETE with a request body gets each class of pathological JSON, and every one of
them (body or not) each class of hostile query string and header. Requests are signed as the tenant's owner
with a full-scope token (staff operations with a verified staff session, the console-only tenant creation
with the owner's session), so they get past authentication, permissions and the object lookup to where the
body is parsed. Each must answer 400 (431 for an overlong header) in the error envelope, with a message
naming the problem, and must write nothing: no INSERT, UPDATE or DELETE reaches the database during the
request, and no audit event appears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from tests.conftest import Actor, login_staff
from tests.core import routes

pytestmark = pytest.mark.django_db

_SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
STAFF_PREFIX = "/api/v1/staff/"
# Operations API tokens may not call (they answer 403 before reading the body): sent with a session.
SESSION_ONLY = {("POST", "/api/v1/tenants")}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the OpenAPI template, /api/v1/tenants/{tenant_slug}/...
    has_body: bool
    query_params: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, values: dict[str, Any]) -> str:
        url = self.path
        for name, value in values.items():
            url = url.replace("{" + name + "}", str(value))
        return url


WRITE_OPERATIONS = [
    Operation(
        method=method.upper(),
        path=path,
        has_body="requestBody" in op,
        query_params=tuple(p["name"] for p in op.get("parameters", []) if p["in"] == "query"),
    )
    for path, item in _SCHEMA["paths"].items()
    for method, op in item.items()
    if method in ("post", "put", "patch", "delete")
]
BODY_OPERATIONS = [op for op in WRITE_OPERATIONS if op.has_body]


# --- the world the requests act on ---------------------------------------------------------------------


@dataclass
class World:
    owner: Actor
    values: dict[str, Any]  # path parameter -> a real object of the owner's tenant
    token: APIClient
    session: APIClient
    staff: APIClient

    def client_for(self, op: Operation) -> APIClient:
        if op.path.startswith(STAFF_PREFIX):
            return self.staff
        if (op.method, op.path) in SESSION_ONLY:
            return self.session
        return self.token


@pytest.fixture
def world(owner: Actor, staff_user: User) -> World:
    objects = routes.World(tenant=owner.tenant, owner=owner.user)
    values = {name: factory(objects) for name, factory in routes.KWARG_FACTORIES.items()}
    clients = World(
        owner=owner,
        values=values,
        token=owner.token_client(),
        session=owner.session_client(),
        staff=login_staff(APIClient(), staff_user),
    )
    for client in (clients.token, clients.session, clients.staff):
        # The token's last_used_at is written on first use (then at most once a minute): do it now, so
        # any write during a hostile request is the request's own.
        assert client.get("/api/v1/me").status_code == 200
    return clients


def _writes(queries: CaptureQueriesContext) -> list[str]:
    statements = [q["sql"] for q in queries.captured_queries]
    return [sql[:120] for sql in statements if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE")]


def _refusal_problems(response: Any, *, status: int, code: str, needle: str) -> list[str]:
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code}, expected {status}: {response.content[:300]!r}")
        return problems
    if not response["Content-Type"].startswith("application/json"):
        return [f"not JSON: {response['Content-Type']}"]
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if (
        set(body) != {"error"}
        or not isinstance(error, dict)
        or not {"code", "message", "fields"} <= set(error)
    ):
        return [f"not the error envelope: {body}"]
    if error["code"] != code:
        problems.append(f"code {error['code']!r}, expected {code!r}")
    if needle.lower() not in error["message"].lower():
        problems.append(f"message {error['message']!r} does not say {needle!r}")
    return problems


def run_over(
    world: World,
    operations: list[Operation],
    *,
    body: bytes = b"{}",
    content_type: str = "application/json",
    query: str | Callable[[Operation], str] = "",
    headers: dict[str, str] | None = None,
    status: int = 400,
    code: str = "invalid",
    needle: str,
) -> None:
    """Sends the request to every operation and fails with every operation that did not refuse it cleanly."""
    failures = []
    for op in operations:
        q = query(op) if callable(query) else query
        url = op.url(world.values) + (f"?{q}" if q else "")
        audit_before = AuditEvent.objects.count()
        # Credentials set on a client override a request's own Authorization header.
        client = APIClient() if headers and "HTTP_AUTHORIZATION" in headers else world.client_for(op)
        with CaptureQueriesContext(connection) as queries:
            response = client.generic(op.method, url, body, content_type=content_type, **(headers or {}))
        problems = _refusal_problems(response, status=status, code=code, needle=needle)
        writes = _writes(queries)
        if writes:
            problems.append(f"wrote to the database: {writes}")
        if AuditEvent.objects.count() != audit_before:
            problems.append("wrote an audit event")
        failures += [f"{op}: {problem}" for problem in problems]
    assert not failures, "\n".join(failures)


def test_the_schema_yields_the_write_endpoints() -> None:
    """The loops below are not vacuous: the schema lists the write endpoints the API has."""
    names = {str(op) for op in BODY_OPERATIONS}
    assert {
        "POST /api/v1/tenants/{tenant_slug}/instances",
        "PATCH /api/v1/tenants/{tenant_slug}/volumes/{volume_id}",
        "PUT /api/v1/tenants/{tenant_slug}/billing/budget",
        "POST /api/v1/staff/tenants/{staff_tenant_slug}/credit-grants",
    } <= names
    assert len(BODY_OPERATIONS) >= 19
    assert any(op.method == "DELETE" for op in WRITE_OPERATIONS)


# --- JSON bodies ---------------------------------------------------------------------------------------


def _object_with_keys(count: int) -> bytes:
    return ("{" + ",".join(f'"k{i}": 1' for i in range(count)) + "}").encode()


HOSTILE_BODIES = {
    # class: (body, what the message must say)
    "deep-nesting": (b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}", "levels deep"),
    "deep-nesting-unclosed": (b"[" * 100_000, "levels deep"),
    "huge-integer": (b'{"name": ' + b"9" * 5000 + b"}", "5000 characters"),
    "integer-beyond-64-bits": (b'{"name": 1' + b"0" * 25 + b"}", "64-bit range"),
    "nan": (b'{"name": NaN}', "NaN"),
    "infinity": (b'{"name": -Infinity}', "Infinity"),
    "float-overflowing-to-infinity": (b'{"name": 1e999}', "too large"),
    "duplicate-keys": (b'{"name": "a", "name": "b"}', "more than once"),
    "invalid-utf8": (b'{"name": "\xff\xfe"}', "UTF-8"),
    "too-many-keys": (b'{"name": ' + _object_with_keys(300) + b"}", "300 keys"),
    "too-many-array-items": (b'{"name": [' + b",".join([b"0"] * 1001) + b"]}", "1001 items"),
    # 10 arrays of 600 one-key objects: 12,010 keys and items, none of the arrays too long.
    "too-many-entries": (
        b'{"name": [' + b",".join([b"[" + b",".join([b'{"a": 1}'] * 600) + b"]"] * 10) + b"]}",
        "in all",
    ),
    "overlong-string": (b'{"name": "' + b"x" * 70_000 + b'"}', "70000 characters"),
    "overlong-key": (b'{"' + b"k" * 70_000 + b'": 1}', "70000 characters"),
    "nul-character": (b'{"name": "a\\u0000b"}', "NUL"),
    "unpaired-surrogate": (b'{"name": "\\ud800"}', "surrogate"),
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
def test_pathological_json_is_400_on_every_write_endpoint(world: World, case: str) -> None:
    body, needle = HOSTILE_BODIES[case]
    run_over(world, BODY_OPERATIONS, body=body, needle=needle)


def test_a_json_charset_other_than_utf8_is_400(world: World) -> None:
    run_over(
        world, BODY_OPERATIONS, body=b"{}", content_type="application/json; charset=latin-1", needle="UTF-8"
    )


# --- query strings -------------------------------------------------------------------------------------


def _repeated(op: Operation) -> str:
    name = op.query_params[0] if op.query_params else "name"
    return f"{name}=true&{name}=true"


HOSTILE_QUERIES: dict[str, tuple[str | Callable[[Operation], str], str]] = {
    "too-many-parameters": ("&".join(f"p{i}=1" for i in range(65)), "65 query parameters"),
    "overlong-query": ("q=" + "a" * 5000, "5002 bytes"),
    "overlong-value": ("q=" + "a" * 1100, "1100 characters"),
    "bad-percent-encoding": ("q=%zz", "percent-encoding"),
    "truncated-percent-encoding": ("q=abc%4", "percent-encoding"),
    "invalid-utf8": ("q=%ff%fe", "UTF-8"),
    "invalid-utf8-in-name": ("%c3=1", "UTF-8"),
    "control-character": ("q=a%00b", "control characters"),
    "repeated-parameter": (_repeated, "2 times"),
}


@pytest.mark.parametrize("case", list(HOSTILE_QUERIES))
def test_hostile_query_strings_are_400_on_every_write_endpoint(world: World, case: str) -> None:
    query, needle = HOSTILE_QUERIES[case]
    run_over(world, WRITE_OPERATIONS, query=query, needle=needle)


# --- headers -------------------------------------------------------------------------------------------

HOSTILE_HEADERS = {
    # class: (headers, status, code, what the message must say)
    "overlong-authorization": (
        {"HTTP_AUTHORIZATION": "Bearer " + "a" * 9000},
        431,
        "header_too_large",
        "Authorization header has 9007 characters",
    ),
    "overlong-idempotency-key": (
        {"HTTP_IDEMPOTENCY_KEY": "k" * 9000},
        431,
        "header_too_large",
        "Idempotency-Key header",
    ),
    "overlong-request-id": (
        {"HTTP_X_REQUEST_ID": "r" * 9000},
        431,
        "header_too_large",
        "X-Request-Id header",
    ),
    "control-character-in-idempotency-key": (
        {"HTTP_IDEMPOTENCY_KEY": "key\x01"},
        400,
        "invalid",
        "Idempotency-Key header contains control characters",
    ),
    "nul-in-authorization": (
        {"HTTP_AUTHORIZATION": "Bearer gpc_abc\x00"},
        400,
        "invalid",
        "Authorization header contains control characters",
    ),
    # A quoted cookie value unescapes "\000" to NUL, which the raw header does not show.
    "nul-in-a-quoted-cookie": (
        {"HTTP_COOKIE": 'sessionid="abcdefgh\\000ijklmnop"'},
        400,
        "invalid",
        "cookie",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE_HEADERS))
def test_hostile_headers_are_refused_on_every_write_endpoint(world: World, case: str) -> None:
    headers, status, code, needle = HOSTILE_HEADERS[case]
    run_over(world, WRITE_OPERATIONS, headers=headers, status=status, code=code, needle=needle)
