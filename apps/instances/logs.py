"""The port through which an instance's log page reads its pod's log: the reading is the operator's
(apps/operator/pod_logs.py, registered in OperatorConfig.ready), which sits above instances in the layer
order. Logs are a convenience: with no reader registered there are none, as when a region has no logs
credential."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PodLogTail = Callable[..., str | None]

_reader: PodLogTail | None = None


def register(reader: PodLogTail) -> None:
    global _reader
    _reader = reader


def pod_log_tail(*, instance: Any, tail_lines: int = 200) -> str | None:
    if _reader is None:
        return None
    return _reader(instance=instance, tail_lines=tail_lines)
