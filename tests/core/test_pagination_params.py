"""limit and offset that are not whole numbers in range answer 400 naming them (DRF ignored them, found by
tests/fuzz); valid ones page as before."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"offset": "null"}, "offset"),
        ({"offset": "-1"}, "offset"),
        ({"offset": str(2**31)}, "offset"),
        ({"offset": "²"}, "offset"),
    ],
)
def test_bad_limit_or_offset_is_a_400_naming_it(owner, params, field):
    response = owner.token_client().get(owner.url("/tokens"), params)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        field: [f"A whole number from {0 if field == 'offset' else 1} to {2**31 - 1}."]
    }


def test_valid_limit_and_offset_page(owner, make_actor):
    response = owner.token_client().get(owner.url("/members"), {"limit": "1", "offset": "0"})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    big = owner.token_client().get(owner.url("/members"), {"limit": "100000"})
    assert big.status_code == 200  # above the maximum page size: cut to it, as before
