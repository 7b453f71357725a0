"""apps/operator/pod_logs.py: the log port's options become read_namespaced_pod_log's arguments, and each
way of having no log is told apart. The Kubernetes client's CoreV1Api.read_namespaced_pod_log is faked: it
is the boundary (kwok pods in the sandbox have no logs; real containers' logs are tested on real nodes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from apps.instances.logs import LogQuery, NoLog, PodLog
from apps.operator import client as kube_client
from apps.operator import names, pod_logs
from apps.operator.cluster import POD_LOG_LIMIT_BYTES

pytestmark = pytest.mark.django_db


@pytest.fixture
def instance(make_instance: Callable[..., Any], make_actor: Callable[..., Any]) -> Any:
    owner = make_actor()
    return make_instance(owner.tenant, created_by=owner.user)


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[mock.MagicMock]:
    monkeypatch.setattr(kube_client, "has_logs_credential", lambda region: True)
    monkeypatch.setattr(kube_client, "logs_api_client", lambda region: k8s.ApiClient())
    with mock.patch.object(k8s.CoreV1Api, "read_namespaced_pod_log", return_value="") as read:
        yield read


def where(instance: Any) -> tuple[str, str]:
    return names.instance_object_name(instance.pk), names.namespace_name(
        instance.tenant_id, instance.tenant.slug
    )


def test_each_option_maps_to_its_argument(instance: Any, kube: mock.MagicMock) -> None:
    kube.return_value = "hello\n"
    query = LogQuery(tail_lines=5, since_seconds=60, previous=True, timestamps=True)
    assert pod_logs.pod_log(instance=instance, query=query) == PodLog(text="hello\n")
    kube.assert_called_once_with(
        *where(instance),
        tail_lines=5,
        since_seconds=60,
        previous=True,
        timestamps=True,
        limit_bytes=POD_LOG_LIMIT_BYTES,
        _request_timeout=(2, 3),
    )


def test_options_left_at_their_defaults_are_not_sent(instance: Any, kube: mock.MagicMock) -> None:
    pod_logs.pod_log(instance=instance, query=LogQuery())
    kube.assert_called_once_with(
        *where(instance), tail_lines=200, limit_bytes=POD_LOG_LIMIT_BYTES, _request_timeout=(2, 3)
    )


def test_a_long_tail_gets_a_byte_limit_that_holds_it(instance: Any, kube: mock.MagicMock) -> None:
    pod_logs.pod_log(instance=instance, query=LogQuery(tail_lines=10_001))
    assert kube.call_args.kwargs["limit_bytes"] == pod_logs.MAX_LIMIT_BYTES
    pod_logs.pod_log(instance=instance, query=LogQuery(tail_lines=1_000))
    assert kube.call_args.kwargs["limit_bytes"] == 1_000 * pod_logs.BYTES_PER_LINE


def test_since_time_is_asked_as_seconds_and_earlier_lines_are_dropped(
    instance: Any, kube: mock.MagicMock
) -> None:
    """The Python client cannot send sinceTime: since_seconds (rounded up, a second earlier) with
    timestamps, then the lines before since_time go."""
    since = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
    options = pod_logs.kube_options(LogQuery(since_time=since), now=since + timedelta(seconds=9.2))
    assert options == {"tail_lines": 200, "since_seconds": 11, "timestamps": True}
    assert pod_logs.kube_options(LogQuery(since_time=since), now=since - timedelta(seconds=5)) is None

    kube.return_value = (
        "2024-05-01T12:00:00.499999999Z before\n"
        "2024-05-01T12:00:00.500000000Z at\n"
        "2024-05-01T12:00:01.000000001Z after\n"
    )
    kept = pod_logs.pod_log(instance=instance, query=LogQuery(since_time=since, timestamps=True))
    assert kept.text == "2024-05-01T12:00:00.500000000Z at\n2024-05-01T12:00:01.000000001Z after\n"
    assert kube.call_args.kwargs["timestamps"] is True
    bare = pod_logs.pod_log(instance=instance, query=LogQuery(since_time=since))
    assert bare.text == "at\nafter\n"


def test_a_read_cut_by_the_byte_limit_drops_its_partial_line(instance: Any, kube: mock.MagicMock) -> None:
    kube.return_value = "x" * 99 + "\n" + "y" * (POD_LOG_LIMIT_BYTES - 100)
    log = pod_logs.pod_log(instance=instance, query=LogQuery())
    assert log == PodLog(text="x" * 99 + "\n", capped=True)


@pytest.mark.parametrize(
    ("error", "missing"),
    [
        (ApiException(status=404, reason="Not Found"), NoLog.NO_POD),
        (ApiException(status=400, reason="container is waiting to start"), NoLog.NO_CONTAINER),
        (ApiException(status=403, reason="Forbidden"), NoLog.ERROR),
        (ApiException(status=500, reason="kubelet unreachable"), NoLog.ERROR),
        (TimeoutError("read timed out"), NoLog.ERROR),
    ],
)
def test_each_failure_says_why(instance: Any, kube: mock.MagicMock, error: Exception, missing: NoLog) -> None:
    kube.side_effect = error
    assert pod_logs.pod_log(instance=instance, query=LogQuery()) == PodLog(missing=missing)


def test_no_logs_credential_asks_nothing(
    instance: Any, kube: mock.MagicMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_client, "has_logs_credential", lambda region: False)
    assert pod_logs.pod_log(instance=instance, query=LogQuery()) == PodLog(missing=NoLog.NO_CREDENTIAL)
    kube.assert_not_called()
