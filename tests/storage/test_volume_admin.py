"""The Django admin cannot delete a volume's row (that would leave its claim in the cluster, stop its bill
and write no audit event); its action deletes through volume_delete, audited as the staff user."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, TestCase

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.storage.admin_actions import ADMIN_REASON
from apps.storage.models import Volume, VolumeEvent
from tests.conftest import login_staff
from tests.storage.volume_helpers import VolumeApi

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/storage/volume/"


@pytest.fixture
def staff(db: Any) -> User:
    return User.objects.create_superuser(email="staff@example.com", password="x-staff-password-1")


@pytest.fixture
def admin_client(staff: User) -> Client:
    return login_staff(Client(), staff)


def test_the_row_cannot_be_deleted_in_the_admin(admin_client: Client, owner_api: VolumeApi) -> None:
    volume = owner_api.create(name="data")
    assert admin_client.get(f"{CHANGELIST}{volume['id']}/delete/").status_code == 403
    assert admin_client.post(f"{CHANGELIST}{volume['id']}/delete/", {"post": "yes"}).status_code == 403
    listing = admin_client.get(CHANGELIST)
    assert b'value="delete_volumes"' in listing.content and b'value="delete_selected"' not in listing.content
    admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [volume["id"]]})
    assert Volume.objects.get(pk=volume["id"]).state == "available"


def test_the_delete_action_goes_through_the_service_audited(
    admin_client: Client, staff: User, owner_api: VolumeApi
) -> None:
    free, held = owner_api.create(name="free"), owner_api.create(name="held")
    assert owner_api.launch((held["id"], "/data")).status_code == 201

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = admin_client.post(
            CHANGELIST,
            {"action": "delete_volumes", "_selected_action": [free["id"], held["id"]]},
            follow=True,
        )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert any("attached to an instance" in m for m in shown), shown
    # No cluster in this region: the deletion completes at once, as it would once the claim is gone.
    assert Volume.objects.get(pk=free["id"]).state == "deleted"
    assert Volume.objects.get(pk=held["id"]).state == "in_use"
    event = AuditEvent.objects.get(action="volume.delete", target_id=free["id"])
    assert (event.actor_user, event.via, event.metadata) == (staff, "admin", {"reason": ADMIN_REASON})
    assert VolumeEvent.objects.filter(
        volume_id=free["id"], name="delete_requested", message=ADMIN_REASON
    ).exists()
