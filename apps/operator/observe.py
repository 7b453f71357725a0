"""What a pod's status says about an instance: a pure function from the pod (as a dict) to an observation.

Kept apart from the API calls so every case is a table test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apps.instances.states import FailureReason, Observation
from apps.operator.manifests import ZONE_LABEL

UNSCHEDULABLE_TIMEOUT = timedelta(seconds=60)
IMAGE_PULL_GRACE = timedelta(seconds=120)
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CRASH_REASONS = frozenset({"CrashLoopBackOff"})


@dataclass(frozen=True)
class PodReading:
    observation: Observation | None
    reason: str = ""
    message: str = ""
    connection: dict[str, Any] = field(default_factory=dict)
    # When the pod's first container started running (the kubelet's clock): where billing starts.
    started_at: datetime | None = None


def _condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def _last_exit(status: dict[str, Any]) -> str:
    """How the container's previous run ended (lastState.terminated), in words: the exit code is what the
    user's command returned (the platform's SSH server passes it on, 128+N for a signal) and the reason
    the runtime's, e.g. OOMKilled when the memory limit killed it. Empty when the kubelet reports none."""
    terminated = (status.get("lastState") or {}).get("terminated") or {}
    if terminated.get("exitCode") is None:
        return ""
    code, reason = terminated["exitCode"], terminated.get("reason") or ""
    if reason == "OOMKilled":
        return f"the container was OOMKilled (exit code {code}): it went past its memory limit"
    return f"the container exited with code {code}" + (f" ({reason})" if reason else "")


def _waiting_reasons(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) of each waiting container; a crash loop's message leads with its last exit."""
    reasons = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            message = waiting.get("message") or ""
            last_exit = _last_exit(status) if waiting["reason"] in CRASH_REASONS else ""
            if last_exit:
                message = f"{waiting['reason']}: {last_exit}" + (f"; {message}" if message else "")
            reasons.append((waiting["reason"], message))
    return reasons


def _tools_failure(pod: dict[str, Any], *, now: datetime, created: datetime) -> PodReading | None:
    """The init container that brings the platform's SSH server (apps/operator/manifests.py) cannot pull its
    image or keeps failing: the platform's fault, not the user's image or command, so an internal failure
    that names it (without this the instance would wait in provisioning for nothing)."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason") or ""
        pull_failed = reason in IMAGE_PULL_REASONS and now - created >= IMAGE_PULL_GRACE
        if pull_failed or reason in CRASH_REASONS:
            detail = _last_exit(status) if reason in CRASH_REASONS else ""
            message = waiting.get("message") or ""
            text = "; ".join(part for part in (detail, message) if part)
            return PodReading(
                Observation.FAILED,
                FailureReason.INTERNAL,
                f"The platform's instance tools ({status.get('name', 'init container')}) did not start: "
                f"{reason}" + (f": {text}" if text else ""),
            )
    return None


def container_started_at(pod: dict[str, Any]) -> datetime | None:
    """The earliest start of a running container, or None when none runs."""
    starts = [
        _parse_time(((status.get("state") or {}).get("running") or {}).get("startedAt"))
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    found = [start for start in starts if start is not None]
    return min(found) if found else None


def disrupted(pod: dict[str, Any]) -> bool:
    """The cluster, not the workload, ended the pod: Failed with a DisruptionTarget condition (the pod
    garbage collector after its node was deleted, a taint or pressure eviction, a preemption). Not a failure
    of the instance: the reconciler replaces the pod, and the scheduler places the new one."""
    condition = _condition(pod, "DisruptionTarget")
    return (pod.get("status") or {}).get("phase") == "Failed" and bool(
        condition and condition.get("status") == "True"
    )


@dataclass(frozen=True)
class LostNode:
    name: str
    zone: str
    lost_at: datetime  # its last sign of life: when the kubelet said NotReady, or last reported at all


def lost_node(node: dict[str, Any] | None, *, now: datetime, after: timedelta) -> LostNode | None:
    """The node, when it has not been Ready for `after` (its Ready condition False, as its kubelet says, or
    Unknown, as the node controller says of a kubelet that stopped reporting). None for a ready node, one
    lost more recently (a blip), and a node that no longer exists (the pod garbage collector fails its pods:
    `disrupted`)."""
    if node is None:
        return None
    ready = _condition(node, "Ready")
    if ready is None or ready.get("status") == "True":
        return None
    # Unknown: the kubelet went silent; its last heartbeat is when the machine was last seen working (the
    # transition is only when the controller noticed, 40 s or more later).
    heard = _parse_time(ready.get("lastHeartbeatTime")) if ready.get("status") == "Unknown" else None
    lost_at = heard or _parse_time(ready.get("lastTransitionTime"))
    if lost_at is None or now - lost_at < after:
        return None
    meta = node.get("metadata") or {}
    zone = (meta.get("labels") or {}).get(ZONE_LABEL, "")
    return LostNode(name=str(meta.get("name", "")), zone=zone, lost_at=min(lost_at, now))


def read_pod(pod: dict[str, Any], *, now: datetime) -> PodReading:
    """Map a pod to the observation it implies. `pod` is the API's JSON (camelCase keys)."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    created = _parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or now
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        if now - created >= UNSCHEDULABLE_TIMEOUT:
            return PodReading(Observation.FAILED, FailureReason.NO_CAPACITY, scheduled.get("message") or "")
        return PodReading(None, message=scheduled.get("message") or "")
    tools = _tools_failure(pod, now=now, created=created)
    if tools is not None:
        return tools
    for reason, message in _waiting_reasons(pod):
        if reason in IMAGE_PULL_REASONS and now - created >= IMAGE_PULL_GRACE:
            return PodReading(Observation.FAILED, FailureReason.IMAGE_PULL_ERROR, message or reason)
        if reason in CRASH_REASONS:
            return PodReading(Observation.FAILED, FailureReason.CRASH_LOOP, message or reason)
    if disrupted(pod):
        condition = _condition(pod, "DisruptionTarget") or {}
        return PodReading(None, reason=condition.get("reason") or "", message=condition.get("message") or "")
    if phase == "Failed":
        return PodReading(
            Observation.FAILED, FailureReason.INTERNAL, status.get("message") or "The pod failed."
        )
    if phase == "Succeeded":
        return PodReading(Observation.FAILED, FailureReason.INTERNAL, "The instance's main process exited.")
    ready = _condition(pod, "Ready")
    started_at = container_started_at(pod) if phase == "Running" else None
    if phase == "Running" and ready and ready.get("status") == "True":
        return PodReading(Observation.POD_READY, started_at=started_at or now)
    if phase == "Running":
        # On a node with its container started, Ready or not: it holds its GPUs, so it is billed from here.
        return PodReading(Observation.POD_STARTED, started_at=started_at or now)
    if scheduled and scheduled.get("status") == "True":
        return PodReading(Observation.POD_CREATED)
    return PodReading(None)


def connection_info(
    *, host: str | None, port: int | None, user: str = "gpucloud", host_key: str | None = None
) -> dict[str, Any]:
    """How to reach the instance, with its host key (`ssh-ed25519 AAAA...`) and the known_hosts line for
    it, so a client can check the server instead of trusting it on first use."""
    if not host or not port:
        return {}
    command = f"ssh -p {port} {user}@{host}"
    info: dict[str, Any] = {"host": host, "port": port, "user": user, "ssh_command": command}
    if host_key:
        info["host_key"] = host_key
        info["known_hosts"] = f"[{host}]:{port} {host_key}" if port != 22 else f"{host} {host_key}"
    return info
