"""?from= and ?to= given empty are a 400 naming them (DRF read "" as "not given" and answered this month;
found by tests/fuzz)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("field", ["from", "to"])
def test_an_empty_from_or_to_is_a_400(owner, field):
    response = owner.token_client().get(owner.url(f"/billing/usage?{field}="))
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_usage_without_a_range_is_this_month(owner):
    response = owner.token_client().get(owner.url("/billing/usage"))
    assert response.status_code == 200
    assert response.json()["from"].endswith("-01T00:00:00Z")
