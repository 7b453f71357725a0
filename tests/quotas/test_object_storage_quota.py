"""The object storage byte quota is a quota like the others: in GET /quotas with what the buckets held at the
last usage sample (started GiB), asked for with a quota request, approved in the admin, set by staff, and
shown with a usage bar on the console's quotas page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from apps.quotas.models import QuotaRequest
from apps.quotas.services import quota_for, quota_set
from apps.storage.objects.models import Bucket
from tests.conftest import Actor, login_staff
from tests.factories import UserFactory
from tests.storage.objects.helpers import bucket_row

pytestmark = pytest.mark.django_db

GIB = 1024**3


def object_storage_row(actor: Actor) -> dict[str, Any]:
    limits = actor.token_client().get(actor.url("/quotas")).json()["limits"]
    return next(row for row in limits if row["resource"] == "object_storage_gib")


def test_usage_is_the_started_gib_of_live_buckets_at_their_last_sample(owner: Actor, make_actor: Any) -> None:
    assert object_storage_row(owner) == {"resource": "object_storage_gib", "limit": 1000, "used": 0}
    bucket_row(owner.tenant, name="one", size_bytes=GIB + 1)
    bucket_row(owner.tenant, name="two", size_bytes=GIB)
    bucket_row(owner.tenant, name="gone", size_bytes=50 * GIB, deleted_at="2026-01-01T00:00:00Z")
    other = make_actor()
    bucket_row(other.tenant, name="theirs", size_bytes=7 * GIB)

    assert object_storage_row(owner)["used"] == 3  # 2 GiB and 1 byte, started GiB
    assert object_storage_row(other)["used"] == 7
    assert Bucket.objects.filter(tenant=owner.tenant).count() == 3


def test_a_quota_request_for_object_storage_is_approved_in_the_admin(owner: Actor) -> None:
    response = owner.token_client().post(
        owner.url("/quota-requests"),
        {"resource": "object_storage_gib", "amount": 5000, "reason": "A 4 TB dataset arrives next week."},
        format="json",
    )
    assert response.status_code == 201, response.content
    request = QuotaRequest.objects.get(pk=response.json()["id"])
    staff = login_staff(Client(), UserFactory(is_staff=True, is_superuser=True))

    staff.post(
        "/admin/quotas/quotarequest/",
        {"action": "approve", "_selected_action": [str(request.pk)]},
        follow=True,
    )

    assert quota_for(owner.tenant).max_object_storage_gib == 5000
    event = AuditEvent.objects.get(action="quota_request.approve", target_id=str(request.pk))
    assert event.changes == {"max_object_storage_gib": {"from": 1000, "to": 5000}}
    assert object_storage_row(owner)["limit"] == 5000


def test_staff_set_it_directly(owner: Actor) -> None:
    staff = UserFactory(is_staff=True)
    quota_set(actor=staff, tenant=owner.tenant, limits={"max_object_storage_gib": "20"}, note="trial")
    assert quota_for(owner.tenant).max_object_storage_gib == 20
    event = AuditEvent.objects.get(tenant=owner.tenant, action="quota.set")
    assert event.changes == {"max_object_storage_gib": {"from": 1000, "to": 20}}


def test_the_console_quotas_page_shows_it_with_a_bar(owner: Actor) -> None:
    quota = quota_for(owner.tenant)
    quota.max_object_storage_gib = 4
    quota.save()
    bucket_row(owner.tenant, name="one", size_bytes=GIB)

    page = owner.session_client().get(f"/t/{owner.tenant.slug}/quotas/").content.decode()

    assert re.search(
        r'<progress id="quota-object_storage_gib" max="100" value="25" '
        r'aria-label="Object storage \(GiB\): 1 of 4 used"',
        page,
    ), page
    assert '<option value="object_storage_gib">Object storage (GiB)</option>' in page
