"""observe.read_pod: a pod's status (the API's JSON) -> the observation it implies. Pure, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.instances.states import FailureReason, Observation
from apps.operator.observe import connection_info, read_pod

CREATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def pod(
    phase: str = "Pending",
    conditions: list[dict[str, Any]] | None = None,
    waiting: str | None = None,
    waiting_message: str = "",
    status_message: str = "",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if waiting:
        status["containerStatuses"] = [
            {"name": "main", "state": {"waiting": {"reason": waiting, "message": waiting_message}}}
        ]
    if status_message:
        status["message"] = status_message
    return {"metadata": {"creationTimestamp": "2026-01-01T12:00:00Z"}, "status": status}


SCHEDULED = {"type": "PodScheduled", "status": "True"}
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/11 nodes are available: 11 Insufficient nvidia.com/gpu.",
}
READY = {"type": "Ready", "status": "True"}
NOT_READY = {"type": "Ready", "status": "False"}


@pytest.mark.parametrize(
    ("case", "the_pod", "after", "expected"),
    [
        ("brand new, nothing yet", pod(), 0, (None, "", "")),
        ("scheduled, creating", pod(conditions=[SCHEDULED]), 5, (Observation.POD_CREATED, "", "")),
        (
            "container creating",
            pod(conditions=[SCHEDULED], waiting="ContainerCreating"),
            5,
            (Observation.POD_CREATED, "", ""),
        ),
        (
            "running but not ready: its container started, so it holds its GPUs",
            pod("Running", [SCHEDULED, NOT_READY]),
            5,
            (Observation.POD_STARTED, "", ""),
        ),
        ("running and ready", pod("Running", [SCHEDULED, READY]), 5, (Observation.POD_READY, "", "")),
        (
            "unschedulable inside the timeout: nothing yet, the reason is kept as message",
            pod(conditions=[UNSCHEDULABLE]),
            59,
            (None, "", UNSCHEDULABLE["message"]),
        ),
        (
            "unschedulable at the timeout",
            pod(conditions=[UNSCHEDULABLE]),
            60,
            (Observation.FAILED, FailureReason.NO_CAPACITY, UNSCHEDULABLE["message"]),
        ),
        (
            "image pull error inside the grace",
            pod(conditions=[SCHEDULED], waiting="ErrImagePull", waiting_message="not found"),
            119,
            (Observation.POD_CREATED, "", ""),
        ),
        (
            "image pull back-off past the grace",
            pod(conditions=[SCHEDULED], waiting="ImagePullBackOff", waiting_message="Back-off pulling"),
            120,
            (Observation.FAILED, FailureReason.IMAGE_PULL_ERROR, "Back-off pulling"),
        ),
        (
            "invalid image name past the grace, no message: the reason stands in",
            pod(conditions=[SCHEDULED], waiting="InvalidImageName"),
            300,
            (Observation.FAILED, FailureReason.IMAGE_PULL_ERROR, "InvalidImageName"),
        ),
        (
            "crash loop: at once",
            pod(
                "Running", [SCHEDULED, NOT_READY], waiting="CrashLoopBackOff", waiting_message="back-off 10s"
            ),
            1,
            (Observation.FAILED, FailureReason.CRASH_LOOP, "back-off 10s"),
        ),
        (
            "pod failed",
            pod("Failed", [SCHEDULED], status_message="OOMKilled"),
            5,
            (Observation.FAILED, FailureReason.INTERNAL, "OOMKilled"),
        ),
        (
            "main process exited",
            pod("Succeeded", [SCHEDULED]),
            5,
            (Observation.FAILED, FailureReason.INTERNAL, "The instance's main process exited."),
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_read_pod(case: str, the_pod: dict[str, Any], after: int, expected: tuple[Any, str, str]) -> None:
    reading = read_pod(the_pod, now=CREATED + timedelta(seconds=after))
    assert (reading.observation, reading.reason, reading.message) == expected


def _running(started: str | None, *, ready: bool) -> dict[str, Any]:
    the_pod = pod("Running", [SCHEDULED, READY if ready else NOT_READY])
    state = {"running": {"startedAt": started}} if started else {"waiting": {"reason": "ContainerCreating"}}
    the_pod["status"]["containerStatuses"] = [{"name": "instance", "state": state}]
    return the_pod


@pytest.mark.parametrize("ready", [False, True], ids=["not ready", "ready"])
def test_a_started_container_dates_the_start_of_billing(ready: bool) -> None:
    """Billing starts when the container started, as the kubelet stamped it, not when we looked."""
    reading = read_pod(_running("2026-01-01T12:00:07Z", ready=ready), now=CREATED + timedelta(minutes=9))
    assert reading.observation == (Observation.POD_READY if ready else Observation.POD_STARTED)
    assert reading.started_at == CREATED + timedelta(seconds=7)


def test_without_a_start_time_billing_starts_when_seen() -> None:
    now = CREATED + timedelta(seconds=30)
    assert read_pod(_running(None, ready=False), now=now).started_at == now
    assert read_pod(pod(conditions=[SCHEDULED]), now=now).started_at is None  # scheduled only: not billed


def test_timeouts_count_from_creation_not_from_now() -> None:
    """The same unschedulable pod is fine at 30 s and failed at 61 s: only its age decides."""
    unschedulable = pod(conditions=[UNSCHEDULABLE])
    assert read_pod(unschedulable, now=CREATED + timedelta(seconds=30)).observation is None
    assert read_pod(unschedulable, now=CREATED + timedelta(seconds=61)).observation == Observation.FAILED


def test_a_pod_without_creation_time_is_treated_as_new() -> None:
    unschedulable = pod(conditions=[UNSCHEDULABLE])
    del unschedulable["metadata"]["creationTimestamp"]
    assert read_pod(unschedulable, now=CREATED + timedelta(days=1)).observation is None


def test_connection_info() -> None:
    assert connection_info(host="10.0.0.5", port=30022) == {
        "host": "10.0.0.5",
        "port": 30022,
        "user": "gpucloud",
        "ssh_command": "ssh -p 30022 gpucloud@10.0.0.5",
    }
    assert connection_info(host=None, port=30022) == {}
    assert connection_info(host="node-1", port=None) == {}


def test_connection_info_names_the_host_key_and_its_known_hosts_line() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7Qkhf5"
    info = connection_info(host="10.0.0.5", port=30022, host_key=key)
    assert info["host_key"] == key
    assert info["known_hosts"] == f"[10.0.0.5]:30022 {key}"  # OpenSSH's form for a port other than 22
    assert connection_info(host="lb.example", port=22, host_key=key)["known_hosts"] == f"lb.example {key}"


def _crash_looping(terminated: dict[str, Any]) -> dict[str, Any]:
    the_pod = pod("Running", [SCHEDULED, NOT_READY])
    the_pod["status"]["containerStatuses"] = [
        {
            "name": "instance",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"}},
            "lastState": {"terminated": terminated},
        }
    ]
    return the_pod


@pytest.mark.parametrize(
    ("terminated", "message"),
    [
        (
            {"exitCode": 3, "reason": "Error"},
            "CrashLoopBackOff: the container exited with code 3 (Error); back-off 10s restarting",
        ),
        (
            {"exitCode": 137, "reason": "OOMKilled"},
            "CrashLoopBackOff: the container was OOMKilled (exit code 137): it went past its memory limit; "
            "back-off 10s restarting",
        ),
        ({"exitCode": 0}, "CrashLoopBackOff: the container exited with code 0; back-off 10s restarting"),
        ({}, "back-off 10s restarting"),
    ],
    ids=["exit code", "oom killed", "no reason", "no last state"],
)
def test_a_crash_loop_says_how_the_container_last_ended(terminated: dict[str, Any], message: str) -> None:
    reading = read_pod(_crash_looping(terminated), now=CREATED + timedelta(seconds=5))
    assert (reading.observation, reading.reason, reading.message) == (
        Observation.FAILED,
        FailureReason.CRASH_LOOP,
        message,
    )


def _tools_waiting(reason: str, last: dict[str, Any] | None = None) -> dict[str, Any]:
    the_pod = pod("Pending", [SCHEDULED])
    waiting = {"reason": reason, "message": "m"}
    status: dict[str, Any] = {"name": "gpucloud-tools", "state": {"waiting": waiting}}
    if last:
        status["lastState"] = {"terminated": last}
    the_pod["status"]["initContainerStatuses"] = [status]
    return the_pod


def test_the_platforms_tools_failing_is_an_internal_failure_that_names_them() -> None:
    """The init container bringing the SSH server: a pull error after the grace period, or a crash loop,
    fails the instance as the platform's fault instead of leaving it provisioning forever."""
    late, soon = CREATED + timedelta(minutes=5), CREATED + timedelta(seconds=5)
    pulled = read_pod(_tools_waiting("ImagePullBackOff"), now=late)
    assert (pulled.observation, pulled.reason) == (Observation.FAILED, FailureReason.INTERNAL)
    assert pulled.message == (
        "The platform's instance tools (gpucloud-tools) did not start: ImagePullBackOff: m"
    )
    # Within the grace period a pull may still succeed: the pod is only created.
    assert read_pod(_tools_waiting("ImagePullBackOff"), now=soon).observation == Observation.POD_CREATED
    crashed = read_pod(_tools_waiting("CrashLoopBackOff", {"exitCode": 1}), now=soon)
    assert (crashed.observation, crashed.reason) == (Observation.FAILED, FailureReason.INTERNAL)
    assert "CrashLoopBackOff: the container exited with code 1; m" in crashed.message
    # Starting (PodInitializing) is no failure.
    assert read_pod(_tools_waiting("PodInitializing"), now=late).observation == Observation.POD_CREATED
