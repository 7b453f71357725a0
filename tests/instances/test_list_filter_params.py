"""include_terminated is true or false; anything else is a 400 naming it (django-filter dropped it quietly,
found by tests/fuzz)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("value", ["7", "136105254495321584", "yes please"])
def test_an_unreadable_include_terminated_is_a_400(tenant_owner, value):
    response = tenant_owner.token_client().get(tenant_owner.url("/instances"), {"include_terminated": value})
    assert response.status_code == 400
    assert "include_terminated" in response.json()["error"]["fields"]


def test_include_terminated_true_shows_terminated_ones(tenant_owner, make_instance):
    gone = make_instance(tenant_owner.tenant, created_by=tenant_owner.user, state="terminated")
    client = tenant_owner.token_client()
    hidden = client.get(tenant_owner.url("/instances"), {"include_terminated": "false"})
    shown = client.get(tenant_owner.url("/instances"), {"include_terminated": "true"})
    assert [row["id"] for row in hidden.json()["results"]] == []
    assert [row["id"] for row in shown.json()["results"]] == [str(gone.pk)]
