"""GET /api/v1/tenants/{slug}/instances/{id}/logs: parameters, answers, permissions and isolation.

The pod log itself is read from Kubernetes, a boundary these tests cannot run (the sandbox's kwok pods
have no logs): a fake reader is registered through the port (apps/instances/logs.py) in its place, and
records what it was asked. The real reader's mapping to read_namespaced_pod_log is tested in
tests/operator/test_pod_logs.py, and the whole chain over HTTP in tests/cli/test_logs.py; logs of real
containers are tested on real nodes separately."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from apps.accounts import scopes
from apps.instances import logs
from apps.instances.logs import LogQuery, NoLog, PodLog
from apps.tenants.roles import Role
from tests.conftest import Actor
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db

T0 = "2024-05-01T12:00:00.000000001Z"


def stamped(count: int, start: int = 0) -> str:
    return "".join(f"2024-05-01T12:00:{i % 60:02d}.{i:09d}Z line {i}\n" for i in range(start, start + count))


@dataclass
class FakeReader:
    answer: PodLog = field(default_factory=PodLog)
    asked: list[LogQuery] = field(default_factory=list)

    def __call__(self, *, instance: Any, query: LogQuery) -> PodLog:
        self.asked.append(query)
        return self.answer


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> FakeReader:
    fake = FakeReader()
    monkeypatch.setattr(logs, "_reader", fake)
    return fake


@pytest.fixture
def owner(make_actor: Callable[..., Actor], catalog: Any) -> Actor:
    return make_actor(Role.OWNER)


def get_logs(actor: Actor, instance: Any, query: str = "", client: Any = None) -> Any:
    client = client or actor.token_client()
    return client.get(actor.url(f"/instances/{instance.pk}/logs") + (f"?{query}" if query else ""))


def test_the_last_lines_oldest_first_and_whether_the_tail_cut_them(
    owner: Actor, make_instance: Any, reader: FakeReader
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    reader.answer = PodLog(text=stamped(4))

    body = get_logs(owner, instance, "tail=3").json()

    assert body == {
        "instance": str(instance.pk),
        "available": True,
        "reason": None,
        "message": None,
        "lines": ["line 1", "line 2", "line 3"],
        "truncated": True,
        "last_timestamp": "2024-05-01T12:00:03.000000003Z",
    }
    # One line more than the tail, to tell whether it cut the log; timestamps always, for last_timestamp.
    assert reader.asked == [LogQuery(tail_lines=4, timestamps=True)]

    reader.answer = PodLog(text=stamped(3))
    body = get_logs(owner, instance, "tail=3&timestamps=true").json()
    assert body["truncated"] is False
    assert body["lines"] == stamped(3).splitlines()


def test_defaults_and_every_parameter_reach_the_reader(
    owner: Actor, make_instance: Any, reader: FakeReader
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    reader.answer = PodLog(text=stamped(1))

    assert get_logs(owner, instance).status_code == 200
    assert get_logs(owner, instance, "since=600&previous=true&tail=10000").status_code == 200
    assert get_logs(owner, instance, "since_time=2024-05-01T14:00:00.123456789%2B02:00").status_code == 200

    assert reader.asked == [
        LogQuery(tail_lines=201, timestamps=True),
        LogQuery(tail_lines=10001, since_seconds=600, previous=True, timestamps=True),
        LogQuery(
            tail_lines=201, since_time=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), timestamps=True
        ),
    ]


def test_a_capped_read_is_truncated(owner: Actor, make_instance: Any, reader: FakeReader) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    reader.answer = PodLog(text=stamped(2), capped=True)
    assert get_logs(owner, instance).json()["truncated"] is True


@pytest.mark.parametrize(
    ("missing", "query", "message"),
    [
        (NoLog.NO_CREDENTIAL, "", "Logs are not available in this region."),
        (NoLog.NO_POD, "", "No pod is running for this instance."),
        (NoLog.NO_CONTAINER, "", "The instance's container has not started yet."),
        (
            NoLog.NO_CONTAINER,
            "previous=true",
            "There is no previous container: the container has not restarted.",
        ),
        (NoLog.ERROR, "", "The logs could not be read just now; retry in a few seconds."),
    ],
)
def test_no_log_is_a_200_saying_why(
    owner: Actor, make_instance: Any, reader: FakeReader, missing: NoLog, query: str, message: str
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, state="pending")
    reader.answer = PodLog(missing=missing)
    response = get_logs(owner, instance, query)
    assert response.status_code == 200
    assert response.json() == {
        "instance": str(instance.pk),
        "available": False,
        "reason": missing.value,
        "message": message,
        "lines": [],
        "truncated": False,
        "last_timestamp": None,
    }


def test_a_terminated_instance_has_no_log_and_the_cluster_is_not_asked(
    owner: Actor, make_instance: Any, reader: FakeReader
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user, state="terminated")
    reader.answer = PodLog(text=stamped(2))
    body = get_logs(owner, instance).json()
    assert (body["available"], body["reason"], body["lines"]) == (False, "terminated", [])
    assert reader.asked == []


def test_without_a_reader_logs_are_unavailable(
    owner: Actor, make_instance: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_reader", None)
    instance = make_instance(owner.tenant, created_by=owner.user)
    assert get_logs(owner, instance).json()["reason"] == "logs_unavailable"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tail=0", "tail"),
        ("tail=10001", "tail"),
        ("tail=ten", "tail"),
        ("tail=", "tail"),
        ("since=0", "since"),
        ("since=604801", "since"),
        ("since=1.5", "since"),
        ("since=10m", "since"),
        ("since_time=2024-05-01T12:00:00", "since_time"),
        ("since_time=yesterday", "since_time"),
        ("since_time=2024-02-30T12:00:00Z", "since_time"),
        ("since_time=", "since_time"),
        ("since_time=2024-05-01T12:00:00Z%00", "since_time"),
        ("since=60&since_time=2024-05-01T12:00:00Z", "since_time"),
        ("previous=yes", "previous"),
        ("timestamps=2", "timestamps"),
        ("tail_lines=5", "tail_lines"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    owner: Actor, make_instance: Any, reader: FakeReader, query: str, field: str
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    error = assert_error(get_logs(owner, instance, query), 400, "invalid", field)
    assert field in error["message"]
    assert reader.asked == []


def test_another_tenants_instance_is_404_whatever_the_query(
    owner: Actor, make_actor: Callable[..., Actor], make_instance: Any, reader: FakeReader
) -> None:
    stranger = make_actor(Role.OWNER)
    theirs = make_instance(stranger.tenant, created_by=stranger.user)
    reader.answer = PodLog(text=stamped(1))
    for query in ("", "tail=0"):
        response = owner.token_client().get(owner.url(f"/instances/{theirs.pk}/logs") + f"?{query}")
        assert_error(response, 404, "not_found")
    assert reader.asked == []


def test_readers_of_the_instance_may_read_its_log_and_nobody_else(
    owner: Actor, make_actor: Callable[..., Actor], make_instance: Any, reader: FakeReader
) -> None:
    instance = make_instance(owner.tenant, created_by=owner.user)
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    assert get_logs(viewer, instance).status_code == 200
    assert get_logs(viewer, instance, client=viewer.session_client()).status_code == 200

    billing = make_actor(Role.BILLING, tenant=owner.tenant)
    assert_error(get_logs(billing, instance), 403, "role_forbidden")
    no_scope = make_actor(Role.OWNER, tenant=owner.tenant, token_scopes=(scopes.BILLING_READ,))
    assert_error(get_logs(no_scope, instance), 403)
    assert len(reader.asked) == 2
