"""Starting a stopped instance is refused like a launch when its pool is full or its region is closed."""

from apps.catalog.models import RegionCapacity, RegionStatus
from apps.instances.states import State
from apps.quotas.services import quota_for


def _stopped(make_instance, actor):
    return make_instance(actor.tenant, created_by=actor.user, state=State.STOPPED, instance_type="gpu-h100x8")


def test_start_refused_with_no_capacity(catalog, tenant_owner, make_instance):
    quota = quota_for(tenant_owner.tenant)
    quota.max_gpus = 100
    quota.save()
    instance = _stopped(make_instance, tenant_owner)
    RegionCapacity.objects.filter(region=catalog.us_east, gpu_type=instance.gpu_type).update(gpus=7)
    response = tenant_owner.token_client().post(tenant_owner.url(f"/instances/{instance.pk}/start"))
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "no_capacity"
    instance.refresh_from_db()
    assert instance.state == State.STOPPED


def test_start_refused_in_maintenance_region(catalog, tenant_owner, make_instance):
    instance = _stopped(make_instance, tenant_owner)
    catalog.us_east.status = RegionStatus.MAINTENANCE
    catalog.us_east.save()
    response = tenant_owner.token_client().post(tenant_owner.url(f"/instances/{instance.pk}/start"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "region_unavailable"
    instance.refresh_from_db()
    assert instance.state == State.STOPPED


def test_start_allowed_when_pool_has_room(catalog, tenant_owner, make_instance):
    instance = _stopped(make_instance, tenant_owner)
    response = tenant_owner.token_client().post(tenant_owner.url(f"/instances/{instance.pk}/start"))
    assert response.status_code == 202, response.content
    assert response.json()["state"] == State.STARTING
