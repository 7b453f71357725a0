"""Catalog filters refuse what they cannot read instead of ignoring it (found by tests/fuzz): min_gpus is a
whole number within PostgreSQL's integer, available is true or false."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"min_gpus": "0.5"}, "min_gpus"),
        ({"min_gpus": str(2**31)}, "min_gpus"),
        ({"available": "7"}, "available"),
        ({"available": "maybe"}, "available"),
    ],
)
def test_unreadable_filters_are_a_400_naming_them(owner, catalog, params, field):
    response = owner.token_client().get("/api/v1/instance-types", params)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_readable_filters_still_filter(owner, catalog):
    response = owner.token_client().get("/api/v1/instance-types", {"min_gpus": "8", "available": "false"})
    assert response.status_code == 200
    rows = response.json()["results"]
    assert rows and all(row["gpu_count"] >= 8 for row in rows)
