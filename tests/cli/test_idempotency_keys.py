"""Which of the client's calls carry an Idempotency-Key: exactly the operations the API documents as honouring
one (the OpenAPI schema lists the header where the handler is @idempotent), each call a fresh key. That the
key is reused across a call's retries is tested behind a lossy proxy (test_client_retries.py)."""

from __future__ import annotations

import inspect
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from gpucloud_cli import Client

pytestmark = pytest.mark.django_db

ID = "4f1c1d2e-0000-4000-8000-000000000000"
# Every call of the client that changes something, with arguments; a new one must be added here.
WRITES: dict[str, Callable[[Client], Any]] = {
    "launch": lambda c: c.launch(instance_type="gpu-h100x1", region="us-east-1", image="pytorch"),
    "stop": lambda c: c.stop(ID),
    "start": lambda c: c.start(ID),
    "restart": lambda c: c.restart(ID),
    "terminate": lambda c: c.terminate(ID, delete_volumes=True),
    "cluster_create": lambda c: c.cluster_create(
        instance_type="gpu-h100x8", region="us-east-1", image="pytorch", node_count=2
    ),
    "cluster_stop": lambda c: c.cluster_stop(ID),
    "cluster_start": lambda c: c.cluster_start(ID),
    "cluster_terminate": lambda c: c.cluster_terminate(ID),
    "ssh_key_add": lambda c: c.ssh_key_add(name="laptop", public_key="ssh-ed25519 AAAA"),
    "ssh_key_delete": lambda c: c.ssh_key_delete(ID),
    "token_create": lambda c: c.token_create(name="ci", scopes=["instances:read"]),
    "token_revoke": lambda c: c.token_revoke(ID),
    "volume_create": lambda c: c.volume_create(name="data", region="us-east-1", size_gib=10),
    "volume_resize": lambda c: c.volume_resize(ID, size_gib=20),
    "volume_delete": lambda c: c.volume_delete(ID),
    "bucket_create": lambda c: c.bucket_create(name="data"),
    "bucket_delete": lambda c: c.bucket_delete("data", force=True),
    "access_key_create": lambda c: c.access_key_create(name="laptop"),
    "access_key_revoke": lambda c: c.access_key_revoke(ID),
    "instance_tags": lambda c: c.instance_tags(ID, {"team": "ml", "old": None}),
    "cluster_tags": lambda c: c.cluster_tags(ID, {"team": "ml"}),
    "volume_tags": lambda c: c.volume_tags(ID, {"team": "ml"}),
    "bucket_tags": lambda c: c.bucket_tags("data", {"team": "ml"}),
    "tag_budget_create": lambda c: c.tag_budget_create(key="team", value="ml", monthly_amount="5.00"),
    "tag_budget_update": lambda c: c.tag_budget_update(ID, monthly_amount="6.00"),
    "tag_budget_delete": lambda c: c.tag_budget_delete(ID),
}
# Calls that only read, or only look up (find_*), or wait, or are the transport itself.
READS = {
    "me", "regions", "gpu_types", "instance_types", "images", "instances", "instance", "instance_events",
    "wait", "ssh_keys", "tokens", "quota", "usage", "usage_export", "balance", "volumes", "volume", "buckets",
    "access_keys",
    "find_instance", "find_ssh_key", "find_token", "find_volume", "find_access_key", "call", "request",
    "instance_logs", "follow_logs", "clusters", "cluster", "cluster_events", "wait_cluster", "find_cluster",
    "bucket", "tag_budgets",
}  # fmt: skip


@pytest.fixture(scope="module")
def schema(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


class Recording(Client):
    """Answers every request with an empty 2xx and remembers what was sent."""

    def __init__(self) -> None:
        super().__init__("http://api.invalid", "gpc_test", tenant="acme", max_retries=0)
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def _send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, Any]:
        self.sent.append((method, urllib.parse.urlsplit(url).path, dict(headers)))
        return 200, b"{}", {}


def operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The schema's operation for a concrete path: the template it fills (literal segments beat
    parameters)."""
    matches = [
        template
        for template in schema["paths"]
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path)
        and method.lower() in schema["paths"][template]
    ]
    assert matches, f"{method} {path} is not in the schema"
    template = min(matches, key=lambda t: t.count("{"))
    return dict(schema["paths"][template][method.lower()])


def test_every_public_method_of_the_client_is_classified() -> None:
    public = {name for name, _ in inspect.getmembers(Client, inspect.isfunction) if not name.startswith("_")}
    assert public == set(WRITES) | READS, "add the new method to WRITES (with arguments) or READS"


@pytest.mark.parametrize("name", sorted(WRITES))
def test_a_call_sends_a_key_where_the_api_honours_one(schema: dict[str, Any], name: str) -> None:
    api = Recording()
    WRITES[name](api)
    WRITES[name](api)

    assert len(api.sent) == 2
    method, path, _ = api.sent[0]
    parameters = operation(schema, method, path).get("parameters", [])
    honoured = any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters)
    keys = [sent[2].get("Idempotency-Key") for sent in api.sent]
    if honoured:
        assert all(keys) and keys[0] != keys[1], f"{method} {path}: one fresh key per call"
    else:
        assert keys == [None, None], f"{method} {path}: the API ignores a key there"


def test_a_caller_may_choose_the_key_of_an_action() -> None:
    api = Recording()
    api.stop(ID, idempotency_key="nightly-stop-2026-01-01")
    api.terminate(ID, idempotency_key="nightly-end-2026-01-01")
    assert [sent[2]["Idempotency-Key"] for sent in api.sent] == [
        "nightly-stop-2026-01-01",
        "nightly-end-2026-01-01",
    ]
