"""The operator's threads and its database pool (docs/operations.md "Database connections"): a process whose
pool is smaller than what its threads may hold at once says so (they would wait, then fail), and one that
fits says nothing. The chart sizes the pool with the same formula (tests/helm/test_chart_database.py)."""

from __future__ import annotations

import logging

import pytest
from django.db import connection

from apps.operator.operator_loop import Operator, OperatorConfig, pool_needed


@pytest.mark.parametrize("regions", [1, 3])
def test_a_pool_below_the_threads_is_reported_and_one_that_fits_is_not(
    regions: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = OperatorConfig(pod_workers=3, change_workers=2, resync_workers=5)
    needed = pool_needed(config, regions)
    # Every thread of every region at once: the discovery loop, then per region 3 + 2 + 5 workers, the
    # resync loop and the event watch.
    assert needed == 1 + regions * (3 + 2 + 5 + 2)
    operator = Operator(config)

    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"pool": {"max_size": needed - 1}})
    with caplog.at_level(logging.WARNING, logger="apps.operator.operator_loop"):
        operator._check_pool(regions)
    assert f"DATABASE_POOL_MAX_SIZE is {needed - 1}, below the {needed} connections" in caplog.text

    caplog.clear()
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"pool": {"max_size": needed}})
    with caplog.at_level(logging.WARNING, logger="apps.operator.operator_loop"):
        operator._check_pool(regions)
    assert "DATABASE_POOL_MAX_SIZE" not in caplog.text
