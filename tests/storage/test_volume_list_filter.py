"""include_deleted is true or false; anything else is a 400 naming it (found by tests/fuzz)."""

from __future__ import annotations


def test_an_unreadable_include_deleted_is_a_400(owner_api):
    response = owner_api.get("/volumes?include_deleted=2")
    assert response.status_code == 400
    assert "include_deleted" in response.json()["error"]["fields"]
    assert owner_api.get("/volumes?include_deleted=true").status_code == 200
