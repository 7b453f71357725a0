"""Pure parts of the operator loop."""

from __future__ import annotations

from apps.operator.operator_loop import CAPACITY_DUTY, capacity_interval


def test_slow_capacity_passes_space_themselves_out() -> None:
    assert capacity_interval(1.0, 0.02) == 1.0  # a small cluster: the configured minimum
    assert capacity_interval(1.0, 0.8) == 0.8 / CAPACITY_DUTY  # thousands of pods: at most 10 % of the time
