"""bench/operator_scale: the watch-to-database lag is reported as measured, never clamped; the raw cold start
runs as many creations at once as the operator."""

from __future__ import annotations

from datetime import UTC, datetime

from bench import operator_scale
from bench.operator_scale import watch_lags


def test_a_row_written_before_our_watch_saw_the_pod_gives_a_negative_lag() -> None:
    at = datetime(2026, 12, 7, 2, 0, 0, tzinfo=UTC)
    seen = at.timestamp()
    recorded = [
        {"instance_id": "a", "at": at},  # written 0.25 s before our watch saw it
        {"instance_id": "b", "at": at},  # 0.1 s after
        {"instance_id": "c", "at": at},  # never seen by our watch: no sample
    ]
    lags = watch_lags(recorded, {"a": seen + 0.25, "b": seen - 0.1})
    assert [round(lag, 3) for lag in lags] == [-0.25, 0.1]


def test_the_raw_cold_start_creates_as_many_at_once_as_the_operator_does() -> None:
    from apps.operator.operator_loop import OperatorConfig

    assert operator_scale.operator_create_concurrency() == OperatorConfig().resync_workers > 1
