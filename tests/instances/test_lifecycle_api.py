"""The lifecycle through the API: list, detail, actions, rename, events, observations and timers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.catalog.models import Region
from apps.instances import services, timers
from apps.instances.models import Instance, InstanceEvent
from apps.instances.states import Observation
from apps.quotas.models import TenantQuota
from apps.quotas.services import quota_for

pytestmark = pytest.mark.django_db

CONNECTION = {"host": "203.0.113.7", "port": 30022, "user": "ubuntu"}


@pytest.fixture
def instance(tenant_owner, launch):
    response = launch(tenant_owner, name="train")
    assert response.status_code == 201
    return Instance.objects.get(pk=response.json()["id"])


def running(instance: Instance) -> Instance:
    services.instance_observe(instance_id=instance.pk, observation=Observation.POD_CREATED)
    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_READY, connection=CONNECTION
    )
    instance.refresh_from_db()
    return instance


def act(actor, instance, action):
    client = actor.token_client()
    if action == "terminate":
        return client.delete(actor.url(f"/instances/{instance.pk}"))
    return client.post(actor.url(f"/instances/{instance.pk}/{action}"))


# --- list ---------------------------------------------------------------------------------------------


def test_list_filters_by_state_region_and_type(tenant_owner, make_instance, catalog):
    tenant, user = tenant_owner.tenant, tenant_owner.user
    make_instance(tenant, created_by=user, name="a", state="running")
    make_instance(tenant, created_by=user, name="b", state="stopped", region=catalog.eu_west)
    make_instance(tenant, created_by=user, name="c", state="running", instance_type="cpu-4x")
    client = tenant_owner.token_client()

    def names(query: str) -> list[str]:
        response = client.get(tenant_owner.url(f"/instances?{query}"))
        assert response.status_code == 200
        return sorted(item["name"] for item in response.json()["results"])

    assert names("") == ["a", "b", "c"]
    assert names("state=running") == ["a", "c"]
    assert names("state=running&state=stopped") == ["a", "b", "c"]
    assert names("region=eu-west-1") == ["b"]
    assert names("instance_type=cpu-4x") == ["c"]
    assert names("region=us-east-1&instance_type=gpu-h100x1") == ["a"]
    assert names("name=b") == ["b"]


def test_list_refuses_an_unknown_state(tenant_owner, catalog):
    response = tenant_owner.token_client().get(tenant_owner.url("/instances?state=exploded"))

    assert response.status_code == 400
    assert "state" in response.json()["error"]["fields"]


def test_terminated_instances_are_hidden_unless_asked_for(tenant_owner, make_instance):
    tenant, user = tenant_owner.tenant, tenant_owner.user
    make_instance(tenant, created_by=user, name="live")
    make_instance(tenant, created_by=user, name="gone", state="terminated")
    client = tenant_owner.token_client()

    def names(query: str) -> list[str]:
        return sorted(i["name"] for i in client.get(tenant_owner.url(f"/instances{query}")).json()["results"])

    assert names("") == ["live"]
    assert names("?include_terminated=true") == ["gone", "live"]
    assert names("?state=terminated") == ["gone"]
    assert names("?include_terminated=false") == ["live"]


def test_list_is_paginated_newest_first(tenant_owner, make_instance):
    now = timezone.now()
    for n in range(5):
        make_instance(
            tenant_owner.tenant,
            created_by=tenant_owner.user,
            name=f"i-{n}",
            created_at=now - timedelta(minutes=n),
        )
    client = tenant_owner.token_client()

    first = client.get(tenant_owner.url("/instances?limit=2")).json()
    last = client.get(tenant_owner.url("/instances?limit=2&offset=4")).json()

    assert first["count"] == 5
    assert [i["name"] for i in first["results"]] == ["i-0", "i-1"]
    assert first["next"] is not None
    assert [i["name"] for i in last["results"]] == ["i-4"]
    assert last["next"] is None


def test_list_shows_only_the_tenants_own_instances(tenant_owner, make_actor, make_instance):
    other = make_actor()
    make_instance(other.tenant, created_by=other.user, name="theirs")
    make_instance(tenant_owner.tenant, created_by=tenant_owner.user, name="mine")

    response = tenant_owner.token_client().get(tenant_owner.url("/instances"))

    assert [i["name"] for i in response.json()["results"]] == ["mine"]


# --- detail, observations, cost -----------------------------------------------------------------------


def test_detail_of_a_pending_instance(tenant_owner, instance):
    body = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()

    assert body["id"] == str(instance.pk)
    assert body["state"] == "pending"
    assert body["allowed_actions"] == ["stop", "terminate"]
    assert body["cost_so_far"] == "0.0000"
    assert body["running_seconds"] == 0
    assert body["connection"] == {}
    assert body["running_since"] is None


def test_another_tenants_instance_is_not_found(tenant_owner, make_actor, make_instance):
    other = make_actor()
    theirs = make_instance(other.tenant, created_by=other.user)

    response = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{theirs.pk}"))

    assert response.status_code == 404


def test_pod_ready_makes_it_running_with_a_connection(tenant_owner, instance):
    instance = running(instance)

    assert instance.state == "running"
    assert instance.running_since is not None
    body = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()
    assert body["state"] == "running"
    assert body["connection"] == CONNECTION
    assert body["allowed_actions"] == ["stop", "restart", "terminate"]


def test_stale_observations_change_nothing(instance):
    instance = running(instance)

    assert services.instance_observe(instance_id=instance.pk, observation=Observation.POD_CREATED) is None
    assert services.instance_observe(instance_id=instance.pk, observation=Observation.POD_GONE) is None
    instance.refresh_from_db()
    assert instance.state == "running"


def test_failure_is_recorded_with_its_reason(tenant_owner, instance):
    services.instance_observe(
        instance_id=instance.pk,
        observation=Observation.FAILED,
        reason="image_pull_error",
        message="not found",
    )

    body = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()
    assert (body["state"], body["failure_reason"], body["state_message"]) == (
        "failed",
        "image_pull_error",
        "not found",
    )
    assert body["allowed_actions"] == ["start", "terminate"]


def test_cost_so_far_is_price_times_billed_seconds(tenant_owner, instance):
    Instance.objects.filter(pk=instance.pk).update(
        accrued_running_seconds=1700, running_since=None, accrued_billed_seconds=1800, billing_since=None
    )

    body = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()

    assert (body["running_seconds"], body["billed_seconds"]) == (1700, 1800)
    assert body["cost_so_far"] == "1.2450"  # 2.49 per hour for half an hour


def test_cost_counts_the_current_run(instance):
    instance = running(instance)
    now = timezone.now()
    instance.running_since = now - timedelta(seconds=3600)
    instance.accrued_running_seconds = 1800
    instance.billing_since = now - timedelta(seconds=3600)
    instance.accrued_billed_seconds = 1800

    assert instance.running_seconds(now) == instance.billed_seconds(now) == 5400
    assert instance.cost_so_far(now) == Decimal("3.7350")


def test_stop_accrues_the_running_seconds(tenant_owner, instance):
    instance = running(instance)
    before = timezone.now()
    Instance.objects.filter(pk=instance.pk).update(running_since=before - timedelta(seconds=100))

    response = act(tenant_owner, instance, "stop")
    elapsed = (timezone.now() - before).total_seconds()

    assert response.status_code == 202
    instance.refresh_from_db()
    assert instance.running_since is None
    assert 100 <= instance.accrued_running_seconds <= 100 + elapsed + 1
    assert response.json()["running_seconds"] == instance.accrued_running_seconds


# --- actions ------------------------------------------------------------------------------------------


def test_stop_then_reconcile_stops_it_without_a_cluster(
    tenant_owner, instance, django_capture_on_commit_callbacks
):
    instance = running(instance)

    with django_capture_on_commit_callbacks(execute=True):
        response = act(tenant_owner, instance, "stop")

    assert response.status_code == 202
    assert response.json()["state"] == "stopping"
    assert response.json()["desired_state"] == "stopped"
    instance.refresh_from_db()
    assert instance.state == "stopped"
    assert instance.stopped_at is not None
    assert instance.connection == {}
    assert AuditEvent.objects.filter(action="instance.stop", target_id=str(instance.pk)).exists()


def test_stop_waits_for_the_operator_in_a_region_with_a_cluster(
    tenant_owner, instance, django_capture_on_commit_callbacks
):
    Region.objects.filter(pk=instance.region_id).update(in_cluster=True)

    with django_capture_on_commit_callbacks(execute=True):
        assert act(tenant_owner, instance, "stop").status_code == 202

    instance.refresh_from_db()
    assert instance.state == "stopping"


def test_start_a_stopped_instance(tenant_owner, instance, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        act(tenant_owner, instance, "stop")
    generation = Instance.objects.get(pk=instance.pk).generation

    response = act(tenant_owner, instance, "start")

    assert response.status_code == 202
    assert response.json()["state"] == "starting"
    assert response.json()["desired_state"] == "running"
    instance.refresh_from_db()
    assert instance.generation == generation + 1
    services.instance_observe(
        instance_id=instance.pk, observation=Observation.POD_READY, connection=CONNECTION
    )
    instance.refresh_from_db()
    assert instance.state == "running"


def test_start_is_refused_when_the_quota_filled_up_meanwhile(
    tenant_owner, launch, instance, django_capture_on_commit_callbacks
):
    quota_for(tenant_owner.tenant)
    TenantQuota.objects.filter(tenant=tenant_owner.tenant).update(max_gpus=1)
    with django_capture_on_commit_callbacks(execute=True):
        act(tenant_owner, instance, "stop")
    assert launch(tenant_owner, name="other").status_code == 201  # takes the GPU the stopped one freed

    response = act(tenant_owner, instance, "start")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert response.json()["error"]["details"] == {"resource": "gpus", "limit": 1, "used": 1, "requested": 1}
    instance.refresh_from_db()
    assert instance.state == "stopped"


def test_restart_a_running_instance(tenant_owner, instance):
    instance = running(instance)

    response = act(tenant_owner, instance, "restart")

    assert response.status_code == 202
    assert response.json()["state"] == "starting"
    instance.refresh_from_db()
    assert instance.running_since is None


def test_terminate_completes_without_a_cluster(tenant_owner, instance, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = act(tenant_owner, instance, "terminate")

    assert response.status_code == 202
    assert response.json()["state"] == "terminating"
    instance.refresh_from_db()
    assert instance.state == "terminated"
    assert instance.desired_state == "terminated"
    assert instance.terminated_at is not None
    detail = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}")).json()
    assert detail["allowed_actions"] == []


@pytest.mark.parametrize(
    ("setup", "action", "allowed"),
    [
        ("pending", "start", ["stop", "terminate"]),
        ("pending", "restart", ["stop", "terminate"]),
        ("running", "start", ["stop", "restart", "terminate"]),
        ("stopped", "stop", ["start", "terminate"]),
        ("stopped", "restart", ["start", "terminate"]),
        ("stopping", "stop", ["terminate"]),
        ("stopping", "start", ["terminate"]),
        ("terminating", "terminate", []),
        ("terminated", "terminate", []),
        ("terminated", "start", []),
        ("terminated", "stop", []),
    ],
)
def test_actions_invalid_for_the_state_are_a_409(tenant_owner, instance, setup, action, allowed):
    if setup == "running":
        running(instance)
    elif setup != "pending":
        Instance.objects.filter(pk=instance.pk).update(state=setup)

    response = act(tenant_owner, instance, action)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_state"
    assert error["details"] == {"state": setup, "allowed_actions": allowed}
    instance.refresh_from_db()
    assert instance.state == setup


def test_actions_take_no_body(tenant_owner, instance):
    response = tenant_owner.token_client().post(
        tenant_owner.url(f"/instances/{instance.pk}/stop"), {"force": True}, format="json"
    )

    assert response.status_code == 400
    assert "force" in response.json()["error"]["fields"]
    instance.refresh_from_db()
    assert instance.state == "pending"


# --- rename -------------------------------------------------------------------------------------------


def test_rename(tenant_owner, instance):
    response = tenant_owner.token_client().patch(
        tenant_owner.url(f"/instances/{instance.pk}"), {"name": "train-v2"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["name"] == "train-v2"
    audit = AuditEvent.objects.get(action="instance.rename")
    assert audit.changes == {"name": {"from": "train", "to": "train-v2"}}


def test_rename_to_a_taken_name_is_a_400(tenant_owner, instance, make_instance):
    make_instance(tenant_owner.tenant, created_by=tenant_owner.user, name="taken")

    response = tenant_owner.token_client().patch(
        tenant_owner.url(f"/instances/{instance.pk}"), {"name": "taken"}, format="json"
    )

    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    instance.refresh_from_db()
    assert instance.name == "train"


@pytest.mark.parametrize(
    "body", [{"name": "Not Valid"}, {"name": ""}, {}, {"name": "ok", "state": "running"}]
)
def test_rename_bad_input(tenant_owner, instance, body):
    response = tenant_owner.token_client().patch(
        tenant_owner.url(f"/instances/{instance.pk}"), body, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"]


def test_a_terminated_instance_cannot_be_renamed(tenant_owner, instance):
    Instance.objects.filter(pk=instance.pk).update(state="terminated")

    response = tenant_owner.token_client().patch(
        tenant_owner.url(f"/instances/{instance.pk}"), {"name": "renamed"}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"


# --- events -------------------------------------------------------------------------------------------


def test_events_are_the_timeline_oldest_first(tenant_owner, instance, django_capture_on_commit_callbacks):
    running(instance)
    with django_capture_on_commit_callbacks(execute=True):
        act(tenant_owner, instance, "stop")

    response = tenant_owner.token_client().get(tenant_owner.url(f"/instances/{instance.pk}/events"))

    assert response.status_code == 200
    events = [
        (e["kind"], e["name"], e["from_state"], e["to_state"], e["actor"]) for e in response.json()["results"]
    ]
    email = tenant_owner.user.email
    assert events[0] == ("action", "launch", "", "pending", email)
    assert events[1][:4] == ("observation", "pod_created", "pending", "provisioning")
    # Seen Ready at once: the container's start, where billing began, is a line of its own.
    assert events[2][:4] == ("observation", "pod_started", "provisioning", "provisioning")
    assert events[3][:4] == ("observation", "pod_ready", "provisioning", "running")
    assert events[4] == ("action", "stop", "running", "stopping", email)
    assert events[5][:4] == ("observation", "pod_gone", "stopping", "stopped")
    assert len(events) == 6
    assert all(actor.startswith("system:") for *_, actor in (events[1], events[2], events[3], events[5]))
    billable = [e["billable"] for e in response.json()["results"]]
    assert billable == [False, False, True, True, False, False]


def test_events_record_failure_reasons(tenant_owner, instance):
    services.instance_observe(
        instance_id=instance.pk, observation=Observation.FAILED, reason="crash_loop", message="exit 1"
    )

    last = (
        tenant_owner.token_client()
        .get(tenant_owner.url(f"/instances/{instance.pk}/events"))
        .json()["results"][-1]
    )

    assert (last["name"], last["to_state"], last["reason"], last["message"]) == (
        "failed",
        "failed",
        "crash_loop",
        "exit 1",
    )


def test_events_of_another_tenants_instance_are_not_found(tenant_owner, make_actor, make_instance):
    other = make_actor()
    theirs = make_instance(other.tenant, created_by=other.user)

    assert (
        tenant_owner.token_client().get(tenant_owner.url(f"/instances/{theirs.pk}/events")).status_code == 404
    )


# --- timers -------------------------------------------------------------------------------------------


def test_enforce_timers_stops_instances_past_auto_stop_after(tenant_owner, make_instance):
    now = timezone.now()
    tenant, user = tenant_owner.tenant, tenant_owner.user
    due = make_instance(
        tenant, created_by=user, auto_stop_after=3600, running_since=now - timedelta(seconds=3600)
    )
    not_yet = make_instance(
        tenant, created_by=user, auto_stop_after=3600, running_since=now - timedelta(seconds=3599)
    )
    # Earlier runs do not count toward auto_stop_after: it is about the current run.
    earlier_runs = make_instance(
        tenant,
        created_by=user,
        auto_stop_after=3600,
        accrued_running_seconds=10_000,
        running_since=now - timedelta(seconds=60),
    )
    no_timer = make_instance(tenant, created_by=user, running_since=now - timedelta(days=30))

    assert timers.enforce_timers(now=now) == 1

    states = dict(Instance.objects.values_list("pk", "state"))
    assert states[due.pk] == "stopping"
    assert states[not_yet.pk] == states[earlier_runs.pk] == states[no_timer.pk] == "running"
    event = InstanceEvent.objects.get(instance=due)
    assert (event.name, event.reason, event.actor_label) == ("stop", "auto_stop_after", "system:system")
    audit = AuditEvent.objects.get(action="instance.stop")
    assert audit.target_id == str(due.pk)
    assert audit.metadata == {"reason": "auto_stop_after"}


def test_enforce_timers_stops_instances_past_max_runtime_in_total(tenant_owner, make_instance):
    now = timezone.now()
    tenant, user = tenant_owner.tenant, tenant_owner.user
    due = make_instance(
        tenant,
        created_by=user,
        max_runtime=7200,
        accrued_running_seconds=7000,
        running_since=now - timedelta(seconds=200),
    )
    not_yet = make_instance(
        tenant,
        created_by=user,
        max_runtime=7200,
        accrued_running_seconds=7000,
        running_since=now - timedelta(seconds=199),
    )

    assert timers.enforce_timers(now=now) == 1

    due.refresh_from_db()
    not_yet.refresh_from_db()
    assert (due.state, due.desired_state) == ("stopping", "stopped")
    assert not_yet.state == "running"
    assert InstanceEvent.objects.get(instance=due).reason == "max_runtime"


def test_enforce_timers_never_deletes_and_ignores_instances_not_running(
    tenant_owner, make_instance, django_capture_on_commit_callbacks
):
    now = timezone.now()
    tenant, user = tenant_owner.tenant, tenant_owner.user
    due = make_instance(tenant, created_by=user, auto_stop_after=60, running_since=now - timedelta(hours=1))
    stopped = make_instance(
        tenant, created_by=user, state="stopped", auto_stop_after=60, accrued_running_seconds=999
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert timers.enforce_timers(now=now) == 1
    assert timers.enforce_timers(now=now) == 0  # already stopped: nothing more to do

    due.refresh_from_db()
    stopped.refresh_from_db()
    assert due.state == "stopped"  # stopped, not terminated, and still there
    assert stopped.state == "stopped"
    assert Instance.objects.count() == 2
