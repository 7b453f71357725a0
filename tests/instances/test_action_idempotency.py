"""Lifecycle actions honour Idempotency-Key like launches do: a client that lost the response (the server
died after committing, a timeout) retries with the same key and gets the original answer, not a 409 for a
change that did happen. Found by the resilience drills (docs/resilience.md, tests/chaos/)."""

from __future__ import annotations

import pytest

from apps.instances import services
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Observation

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance(tenant_owner, launch):
    response = launch(tenant_owner, name="retried")
    assert response.status_code == 201
    services.instance_observe(instance_id=response.json()["id"], observation=Observation.POD_READY)
    return Instance.objects.get(pk=response.json()["id"])


def send(actor, instance, action, key):
    client = actor.token_client()
    headers = {"Idempotency-Key": key}
    if action == "terminate":
        return client.delete(actor.url(f"/instances/{instance.pk}"), headers=headers)
    return client.post(actor.url(f"/instances/{instance.pk}/{action}"), headers=headers)


@pytest.mark.parametrize("action", ["stop", "restart", "terminate"])
def test_a_retried_action_replays_its_answer_and_acts_once(tenant_owner, instance, action) -> None:
    first = send(tenant_owner, instance, action, "act-once")
    again = send(tenant_owner, instance, action, "act-once")

    assert first.status_code == again.status_code == 202, again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert InstanceEvent.objects.filter(instance=instance, kind="action", name=action).count() == 1


def test_without_a_key_a_repeated_action_is_refused_as_before(tenant_owner, instance) -> None:
    assert (
        tenant_owner.token_client().post(tenant_owner.url(f"/instances/{instance.pk}/stop")).status_code
        == 202
    )
    again = tenant_owner.token_client().post(tenant_owner.url(f"/instances/{instance.pk}/stop"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_state"


def test_a_key_reused_for_another_action_is_refused(tenant_owner, instance) -> None:
    assert send(tenant_owner, instance, "stop", "one-key").status_code == 202
    reused = send(tenant_owner, instance, "terminate", "one-key")
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert Instance.objects.get(pk=instance.pk).desired_state == "stopped"


def test_a_refused_action_does_not_burn_its_key(tenant_owner, instance) -> None:
    """Errors are not stored: once the state allows it, the same key acts."""
    assert send(tenant_owner, instance, "start", "start-later").status_code == 409  # it is running
    assert send(tenant_owner, instance, "stop", "stop-now").status_code == 202
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE)
    assert send(tenant_owner, instance, "start", "start-later").status_code == 202


def test_the_schema_documents_the_key_on_every_action(api_client) -> None:
    schema = api_client.get("/api/v1/schema/", {"format": "json"}).json()
    base = "/api/v1/tenants/{tenant_slug}/instances/{instance_id}"
    for path, method in [(f"{base}/{a}", "post") for a in ("stop", "start", "restart")] + [(base, "delete")]:
        operation = schema["paths"][path][method]
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert "Idempotency-Key" in headers, (method, path)
        assert "422" in operation["responses"], (method, path)
