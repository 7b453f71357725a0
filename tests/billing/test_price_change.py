"""Changing a price creates a price version: usage before it keeps the old price, usage after gets the new."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.billing import metering
from apps.billing.models import PriceVersion, UsageRecord
from apps.billing.services import price_change
from apps.catalog.models import InstanceType
from apps.core.errors import InvalidInput
from apps.instances import services
from apps.instances.models import InstanceEvent
from tests.conftest import login_staff
from tests.factories import UserFactory
from tests.instances.helpers import seed

pytestmark = pytest.mark.django_db


def test_staff_price_change_in_the_admin_is_a_new_version(client):
    seed()
    staff = UserFactory(is_staff=True, is_superuser=True)
    login_staff(client, staff)
    h100 = InstanceType.objects.get(slug="gpu-h100x1")
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(h100.pk),
        "form-0-price_per_hour": "2.9900",
        "form-0-active": "on",
        "_save": "Save",
    }
    response = client.post("/admin/catalog/instancetype/?q=gpu-h100x1", data)
    assert response.status_code == 302, response.content[:500]

    version = PriceVersion.objects.get(instance_type=h100)
    assert version.price_per_hour == Decimal("2.9900")
    assert abs(version.effective_from - timezone.now()) < timedelta(minutes=1)
    h100.refresh_from_db()
    assert h100.price_per_hour == Decimal("2.9900")
    assert AuditEvent.objects.filter(action="billing.price_change", actor_user=staff).exists()


def test_running_instance_is_billed_at_each_price_in_force(owner):
    seed()
    instance = services.instance_launch(
        actor=owner.user,
        tenant=owner.tenant,
        req=services.LaunchRequest(instance_type="gpu-h100x1", region="us-east-1", image="pytorch"),
    )
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    InstanceEvent.objects.create(
        instance=instance,
        kind="observation",
        name="pod_ready",
        from_state="provisioning",
        to_state="running",
        created_at=start,
        billable=True,
    )
    price_change(
        actor=None,
        instance_type=instance.instance_type,
        price_per_hour=Decimal("3.0000"),
        effective_from=start + timedelta(seconds=120),
    )
    InstanceEvent.objects.create(
        instance=instance,
        kind="action",
        name="stop",
        from_state="running",
        to_state="stopping",
        created_at=start + timedelta(seconds=180),
    )

    metering.meter_instance(instance)

    rows = UsageRecord.objects.filter(resource_id=str(instance.pk)).order_by("period")
    assert [(r.quantity_seconds, r.unit_price_per_hour) for r in rows] == [
        (120, Decimal("2.4900")),  # to the price change
        (60, Decimal("3.0000")),  # from it to the stop
    ]


def test_negative_price_refused():
    seed()
    with pytest.raises(InvalidInput):
        price_change(actor=None, instance_type=InstanceType.objects.first(), price_per_hour=Decimal("-1"))
