"""Tags on buckets: set at creation (through the storage service), changed by PATCH without calling it, a
400 naming the field and the tag, audited; another tenant's bucket is a 404."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.storage.objects.models import Bucket
from tests.conftest import Actor
from tests.storage.objects.helpers import bucket_row
from tests.tenants.support import assert_error

pytestmark = pytest.mark.django_db


def test_patch_merges_a_buckets_tags_and_audits_them(owner: Actor) -> None:
    bucket_row(owner.tenant, name="datasets", tags={"team": "ml", "old": "x"})
    url = owner.url("/buckets/datasets")
    response = owner.token_client().patch(url, {"tags": {"old": None, "Env": "prod"}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["tags"] == {"env": "prod", "team": "ml"}
    assert owner.token_client().get(url).json()["tags"] == {"env": "prod", "team": "ml"}
    audit = AuditEvent.objects.get(tenant=owner.tenant, action="bucket.tags")
    assert audit.changes["tags"] == {"from": {"team": "ml", "old": "x"}, "to": {"env": "prod", "team": "ml"}}


def test_a_bad_tag_is_a_400_naming_the_field_and_the_tag(owner: Actor) -> None:
    bucket_row(owner.tenant, name="datasets")
    response = owner.token_client().patch(
        owner.url("/buckets/datasets"), {"tags": {"team": "x" * 300}}, format="json"
    )
    error = assert_error(response, 400, field="tags")
    assert "'team'" in error["message"]
    assert Bucket.objects.get(tenant=owner.tenant, name="datasets").tags == {}


def test_another_tenants_bucket_is_a_404(owner: Actor, make_actor: Any) -> None:
    bucket_row(owner.tenant, name="datasets")
    stranger = make_actor()
    response = stranger.token_client().patch(
        stranger.url("/buckets/datasets"), {"tags": {"team": "x"}}, format="json"
    )
    assert_error(response, 404)
    assert Bucket.objects.get(tenant=owner.tenant, name="datasets").tags == {}


def test_a_bucket_created_with_tags_carries_them(owner: Actor, object_storage: dict[str, Any]) -> None:
    response = owner.token_client().post(
        owner.url("/buckets"), {"name": "tagged", "tags": {"team": "ml"}}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["tags"] == {"team": "ml"}
    created = AuditEvent.objects.get(tenant=owner.tenant, action="bucket.create")
    assert created.metadata["tags"] == {"team": "ml"}


def test_a_bucket_with_bad_tags_is_refused_before_the_service_is_called(owner: Actor) -> None:
    response = owner.token_client().post(
        owner.url("/buckets"), {"name": "tagged", "tags": {"a b": "c"}}, format="json"
    )
    assert_error(response, 400, field="tags")
    assert not Bucket.objects.filter(tenant=owner.tenant).exists()
