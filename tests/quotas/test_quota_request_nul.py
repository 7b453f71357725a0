"""Found by the fuzzer: a NUL character in a slug looked up in the database was a 500 (PostgreSQL refuses
NUL in text). It is a 400 naming the field, for every strict input serializer."""

from __future__ import annotations

import pytest

from apps.quotas.models import QuotaRequest
from tests.conftest import Actor


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["gpu_type", "region"])
def test_a_nul_character_in_a_slug_is_refused_on_its_field(owner: Actor, field: str) -> None:
    body = {
        "resource": "gpus",
        "amount": 16,
        "reason": "Training a larger model next week.",
        field: "h100\x00",
    }

    response = owner.token_client().post(owner.url("/quota-requests"), body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {field: ["Null characters are not allowed."]}
    assert not QuotaRequest.objects.exists()
