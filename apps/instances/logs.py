"""The port through which instances read their pod's log: the reading is the operator's
(apps/operator/pod_logs.py, registered in OperatorConfig.ready), which sits above instances in the layer
order. The reader answers a LogQuery with a PodLog: the text, or why there is none (no logs credential for
the region, no pod, no container yet, an error on the way), so the API can tell a customer which it is.
With no reader registered there are no logs, as when a region has no logs credential.

`instance_log` shapes a reader's answer for the API (lines, whether tail cut them, the last timestamp);
`pod_log_tail` keeps the console's simpler question (the text or None)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any


class NoLog(StrEnum):
    """Why there is no log to show (the API's `reason`)."""

    TERMINATED = "terminated"  # decided by instances: the pod went with the instance
    NO_CREDENTIAL = "logs_unavailable"  # the region has no logs credential (or no reader is registered)
    NO_POD = "no_pod"  # the cluster has no pod for the instance (pending, stopped, being rescheduled)
    NO_CONTAINER = "no_container"  # the pod exists but its container (or a previous one) does not
    ERROR = "error"  # the cluster could not be asked or refused: a retry may succeed


MESSAGES = {
    NoLog.TERMINATED: "The instance is terminated: its logs were deleted with its pod.",
    NoLog.NO_CREDENTIAL: "Logs are not available in this region.",
    NoLog.NO_POD: "No pod is running for this instance.",
    NoLog.NO_CONTAINER: "The instance's container has not started yet.",
    NoLog.ERROR: "The logs could not be read just now; retry in a few seconds.",
}
NO_PREVIOUS_MESSAGE = "There is no previous container: the container has not restarted."


@dataclass(frozen=True)
class LogQuery:
    """What to read, as Kubernetes' pod log options: at most tail_lines lines (None: all), since_seconds
    or since_time (not both), the previous container's log, and a timestamp before each line."""

    tail_lines: int | None = 200
    since_seconds: int | None = None
    since_time: datetime | None = None
    previous: bool = False
    timestamps: bool = False


@dataclass(frozen=True)
class PodLog:
    text: str = ""
    missing: NoLog | None = None  # set when there is no log to read; text is then ""
    capped: bool = False  # the reader's byte limit cut the newest lines off (and a partial last line)


PodLogReader = Callable[..., PodLog]  # reader(*, instance, query: LogQuery) -> PodLog; never raises

_reader: PodLogReader | None = None


def register(reader: PodLogReader) -> None:
    global _reader
    _reader = reader


def read(*, instance: Any, query: LogQuery) -> PodLog:
    if _reader is None:
        return PodLog(missing=NoLog.NO_CREDENTIAL)
    return _reader(instance=instance, query=query)


def pod_log_tail(*, instance: Any, tail_lines: int = 200) -> str | None:
    """The console's question: the last lines as text, or None whatever the reason."""
    log = read(instance=instance, query=LogQuery(tail_lines=tail_lines))
    return log.text or None


@dataclass(frozen=True)
class InstanceLog:
    """The API's answer (apps/instances/api/logs.py)."""

    lines: list[str]
    truncated: bool
    last_timestamp: str | None
    missing: NoLog | None = None
    message: str | None = None


def instance_log(*, instance: Any, query: LogQuery, terminated: bool) -> InstanceLog:
    """Up to query.tail_lines lines, oldest first. The reader is asked for one line more, with timestamps,
    so that `truncated` says whether the tail cut the log and `last_timestamp` (the last line's, for a client
    that follows with since_time) is known whether or not the caller wants timestamps on the lines."""
    if terminated:
        return InstanceLog([], False, None, NoLog.TERMINATED, MESSAGES[NoLog.TERMINATED])
    tail = query.tail_lines or 1
    log = read(instance=instance, query=replace(query, tail_lines=tail + 1, timestamps=True))
    if log.missing is not None:
        message = MESSAGES[log.missing]
        if log.missing == NoLog.NO_CONTAINER and query.previous:
            message = NO_PREVIOUS_MESSAGE
        return InstanceLog([], False, None, log.missing, message)
    stamped = log.text.splitlines()
    truncated = len(stamped) > tail or log.capped
    stamped = stamped[-tail:]
    last_timestamp = split_timestamp(stamped[-1])[0] if stamped else None
    lines = stamped if query.timestamps else [split_timestamp(line)[1] for line in stamped]
    return InstanceLog(lines, truncated, last_timestamp or None)


def split_timestamp(line: str) -> tuple[str, str]:
    """("2024-05-01T12:00:00.123456789Z", "the text") from a line Kubernetes wrote with timestamps=true."""
    stamp, _, text = line.partition(" ")
    return stamp, text
