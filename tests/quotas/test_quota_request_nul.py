"""Found by the fuzzer: a NUL character in a slug looked up in the database was a 500 (PostgreSQL refuses
NUL in text). It is a 400 naming the field: the API's strict JSON parser refuses it before any view runs
(apps/core/strict_json.py), and the strict input serializers still refuse it on their own (a form, or a
parser that lets it through, reaches them)."""

from __future__ import annotations

import pytest

from apps.quotas.api.serializers import QuotaRequestCreateSerializer
from apps.quotas.models import QuotaRequest
from tests.conftest import Actor


def _body(field: str) -> dict[str, object]:
    return {
        "resource": "gpus",
        "amount": 16,
        "reason": "Training a larger model next week.",
        field: "h100\x00",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["gpu_type", "region"])
def test_a_nul_character_in_a_slug_is_refused_on_its_field(owner: Actor, field: str) -> None:
    response = owner.token_client().post(owner.url("/quota-requests"), _body(field), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        field: ["Strings must not contain the NUL character (U+0000)."]
    }
    assert not QuotaRequest.objects.exists()


@pytest.mark.parametrize("field", ["gpu_type", "region"])
def test_the_serializer_refuses_a_nul_character_too(field: str) -> None:
    serializer = QuotaRequestCreateSerializer(data=_body(field))

    assert not serializer.is_valid()
    assert serializer.errors[field] == ["Null characters are not allowed."]
