"""`manage.py operator` refuses bad options before it starts anything."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_pod_workers_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(CommandError, match="--pod-workers"):
        call_command("operator", f"--pod-workers={value}")
