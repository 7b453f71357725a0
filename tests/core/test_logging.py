"""Structured logs: the production handler (JSON formatter, request context, redaction; config/settings/
observability.py) over real code paths that handle secrets, with every logger at DEBUG so third-party
libraries that print request and response bodies (botocore, kubernetes, urllib3) are included."""

from __future__ import annotations

import http.client
import io
import json
import logging
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils.module_loading import import_string

from apps.accounts.scopes import INSTANCES_READ
from apps.catalog.models import Region
from apps.core import request_context
from apps.core.logging import REDACTED, redact
from apps.operator.reconcile_instances import reconcile_instance
from config.settings.observability import logging_settings
from tests.conftest import Actor
from tests.instances.helpers import Catalog, instance_row, seed
from tests.storage.objects.conftest import object_storage, s3_server  # noqa: F401 - fixtures
from tests.support.processes import PYTHON, Processes, free_port, wait_for

PASSWORD = "Correct-Horse-" + secrets.token_urlsafe(8)


class ProductionLog:
    """The console handler production configures, writing to a buffer, on the root logger at DEBUG."""

    def __init__(self) -> None:
        conf = logging_settings(log_format="json", level="DEBUG")
        handler_conf = conf["handlers"]["console"]
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(import_string(conf["formatters"][handler_conf["formatter"]]["()"])())
        for name in handler_conf["filters"]:
            self.handler.addFilter(import_string(conf["filters"][name]["()"])())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]  # every line is JSON

    def assert_absent(self, *values: str) -> None:
        for value in values:
            assert value and value not in self.text, f"a secret reached the log: {value[:6]}..."


@pytest.fixture
def log() -> Iterator[ProductionLog]:
    captured, root = ProductionLog(), logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)


def secret_part(token: str) -> str:
    return token[len("gpc_") + 10 + 1 :]  # gpc_<10-character prefix>_<secret>


def access_line(log: ProductionLog, method: str, route_end: str) -> dict[str, Any]:
    for line in log.lines():
        words = line["message"].split()
        if line["logger"] == "gpucloud.access" and words[0] == method and words[1].endswith(route_end):
            return line
    raise AssertionError(f"no access line for {method} ...{route_end}: {log.text[-2000:]}")


# ---- real code paths -----------------------------------------------------------------------------------


def test_token_creation_logs_the_request_with_its_context_and_never_the_token(
    log: ProductionLog, owner: Actor
) -> None:
    response = owner.session_client().post(
        owner.url("/tokens"), {"name": "ci", "scopes": [INSTANCES_READ]}, format="json"
    )
    assert response.status_code == 201, response.content
    plaintext = response.json()["token"]
    log.assert_absent(plaintext, secret_part(plaintext))
    line = access_line(log, "POST", "/tokens")
    assert line["request_id"] == response["X-Request-ID"]
    assert line["tenant"] == owner.tenant.slug
    assert line["actor"] == f"user:{owner.user.pk}"
    assert line["status"] == 201 and line["level"] == "INFO" and line["timestamp"].endswith("+00:00")


def test_token_authenticated_requests_name_the_tokens_user(log: ProductionLog, owner: Actor) -> None:
    response = owner.token_client().get(owner.url("/tokens"))
    assert response.status_code == 200
    log.assert_absent(owner.token_plaintext, secret_part(owner.token_plaintext))
    line = access_line(log, "GET", "/tokens")
    assert (line["tenant"], line["actor"]) == (owner.tenant.slug, f"user:{owner.user.pk}")


@pytest.mark.django_db
def test_a_failed_login_never_logs_the_password(log: ProductionLog) -> None:
    response = Client().post("/accounts/login/", {"username": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 400  # the form again, with its error
    log.assert_absent(PASSWORD)
    line = access_line(log, "POST", "/accounts/login/")
    assert line["request_id"] == response["X-Request-ID"] and line["actor"] is None


@pytest.mark.django_db
def test_a_webhook_with_a_bad_signature_logs_neither_stripe_secret(log: ProductionLog, settings: Any) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_" + secrets.token_hex(16)
    settings.STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
    response = Client().post(
        "/api/v1/stripe/webhook",
        data=b'{"id": "evt_1", "object": "event"}',
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE="t=1,v1=" + "0" * 64,
    )
    assert response.status_code == 400
    log.assert_absent(settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET)
    assert any(line["logger"] == "django.request" and line["level"] == "WARNING" for line in log.lines())
    assert access_line(log, "POST", "/stripe/webhook")["status"] == 400


FAKE_KEY = (
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI" + secrets.token_hex(20) + "\n-----END EC PRIVATE KEY-----"
)


def test_loading_a_kubeconfig_and_failing_to_reach_its_cluster_logs_no_credential(
    log: ProductionLog, owner: Actor
) -> None:
    catalog: Catalog = seed()
    bearer = secrets.token_urlsafe(32)
    # A local test cluster: TLS verification may be skipped (check_kubeconfig).
    region = Region.objects.create(slug="gone-1", name="GONE-1", position=9, sandbox=True)
    region.set_kubeconfig(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\n"
        f"users: [{{name: gone, user: {{token: '{bearer}'}}}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: gone}}]\n"
    )
    region.save()
    instance = instance_row(
        tenant=owner.tenant,
        instance_type=catalog.instance_type("gpu-h100x1"),
        region=region,
        created_by=owner.user,
        name="far",
    )
    reconcile_instance(instance.pk)  # logs the failure; the operator's resync retries
    log.assert_absent(bearer, region.kubeconfig_encrypted)
    failure = next(line for line in log.lines() if line["logger"] == "apps.operator.reconcile_instances")
    assert failure["level"] == "WARNING" and failure["instance_id"] == str(instance.pk)
    assert "gone-1" in failure["message"]


@pytest.mark.usefixtures("object_storage")
def test_creating_an_access_key_logs_neither_its_secret_nor_the_admin_key(
    log: ProductionLog, owner: Actor, settings: Any
) -> None:
    response = owner.token_client().post(owner.url("/access-keys"), {"name": "training"}, format="json")
    assert response.status_code == 201, response.content
    secret = response.json()["secret_access_key"]
    log.assert_absent(secret, settings.OBJECT_STORAGE["SECRET_ACCESS_KEY"])
    # botocore printed the IAM answer at DEBUG: the secret in it was there, and was redacted.
    assert any(line["logger"].startswith("botocore") and REDACTED in line["message"] for line in log.lines())
    line = access_line(log, "POST", "/access-keys")
    assert (line["tenant"], line["actor"], line["status"]) == (
        owner.tenant.slug,
        f"user:{owner.user.pk}",
        201,
    )


# ---- the formatter and the filter ------------------------------------------------------------------------


def test_json_lines_carry_the_bound_context_extras_and_a_redacted_traceback(log: ProductionLog) -> None:
    logger = logging.getLogger("apps.test")
    with request_context.bind(request_id="req-12345678", tenant="acme", actor="user:7", instance_id="i-1"):
        try:
            raise RuntimeError("cannot reach postgres://app:hunter2-secret@db:5432/app")
        except RuntimeError:
            logger.exception("failed with %s", {"password": "hunter2-secret"}, extra={"attempt": 3})
    (line,) = [line for line in log.lines() if line["logger"] == "apps.test"]
    assert line["request_id"] == "req-12345678"
    assert (line["tenant"], line["actor"], line["instance_id"]) == ("acme", "user:7", "i-1")
    assert line["attempt"] == 3 and line["level"] == "ERROR"
    assert "RuntimeError" in line["exception"] and REDACTED in line["exception"]
    log.assert_absent("hunter2-secret")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token gpc_abcdefghij_" + "A1b2C3d4E5" * 4, "A1b2C3d4E5" * 4),
        ("key sk_live_51AbCdEf0123456789", "51AbCdEf0123456789"),
        ("key rk_test_51AbCdEf0123456789", "51AbCdEf0123456789"),
        ("whsec_AbC123dEf456 configured", "AbC123dEf456"),
        ("redis://:sup3r-s3cret@cache:6379/0", "sup3r-s3cret"),
        ("{'password': 'two words'}", "two words"),
        ('{"client_secret": "abc123xyz"}', "abc123xyz"),
        ("STRIPE_SECRET_KEY=abc123xyz&next=1", "abc123xyz"),
        ("headers={'Authorization': 'Bearer abc.def.ghi'}", "abc.def.ghi"),
        ("user:\n    token: eyJhbGciOi.x.y\n", "eyJhbGciOi.x.y"),
        ("client-key-data: LS0tLS1CRUdJTiBFQyBQUklW", "LS0tLS1CRUdJTiBFQyBQUklW"),
        ("aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY now", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("<SecretAccessKey>Zx9+abc</SecretAccessKey>", "Zx9+abc"),
        (FAKE_KEY, "MHcCAQEEI"),
    ],
)
def test_redact_removes_each_kind_of_secret(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert REDACTED in redact(text)


def test_redact_leaves_ids_and_digests_alone() -> None:
    text = "token_id=42 instance_id=7f1c sha=0123456789abcdef0123456789abcdef01234567 prefix gpc_ab"
    assert redact(text) == text


def test_log_format_setting() -> None:
    assert logging_settings(log_format="plain", level="INFO")["handlers"]["console"]["formatter"] == "plain"
    with pytest.raises(ImproperlyConfigured):
        logging_settings(log_format="xml", level="INFO")


# ---- gunicorn's own log ----------------------------------------------------------------------------------


def test_gunicorns_own_log_is_json_and_redacted(tmp_path: Any) -> None:
    """A real gunicorn started as the chart and the image start it (`--config=python:config.gunicorn`):
    its master's lines (before Django is loaded) and a worker's complaint about a bad request line come out
    as JSON from the same formatter, and a secret in that request line is redacted."""
    port = free_port()
    # Python's warnings (whitenoise's: no collected static files here) are not log records: kept out.
    env = {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "PYTHONWARNINGS": "ignore"}
    processes = Processes(tmp_path, env=env)
    secret = "hunter2-" + secrets.token_urlsafe(8)
    try:
        web = processes.start(
            "web",
            [
                PYTHON, "-m", "gunicorn", "config.wsgi:application", f"--bind=127.0.0.1:{port}",
                "--workers=1", "--no-control-socket", "--config=python:config.gunicorn",
            ],
        )  # fmt: skip
        wait_for(lambda: "Booting worker" in web.output(), what="gunicorn's worker", processes=processes)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"password={secret} / HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert sock.recv(1024).startswith(b"HTTP/1.1 400")
        wait_for(lambda: "Invalid request" in web.output(), what="the bad request", processes=processes)
        # A good request is logged by gpucloud.access alone (by URL pattern), not by gunicorn's access log.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", f"/api/v1/tenants?token={secret}", headers={"Host": "localhost"})
        assert connection.getresponse().status == 401
        connection.close()
        wait_for(lambda: "gpucloud.access" in web.output(), what="the access line", processes=processes)
    finally:
        processes.stop_all()
    text = web.output()
    assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    gunicorn = {line["message"].split(":")[0]: line for line in lines if line["logger"] == "gunicorn.error"}
    assert gunicorn["Listening at"]["level"] == "INFO"  # the master, before any Django settings load
    invalid = gunicorn["Invalid request from ip=127.0.0.1"]
    assert invalid["level"] == "WARNING" and REDACTED in invalid["message"]
    assert {"timestamp", "request_id"} <= set(invalid)
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
