"""Volume pages: the list with its figures and live state, create with the API's field errors and its
quota and funds refusals, the volume page with its timeline, grow, rename and delete (409 while attached);
the launch page's volumes, the instance page's attachments and terminate's "also delete the volumes".
Viewers read only, roles without storage.read get 403, other tenants' volumes are 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import TestCase

from apps.audit.models import AuditEvent
from apps.instances.models import Instance
from apps.quotas.services import quota_for
from apps.storage import services as storage_services
from apps.storage.models import Volume, VolumeAttachment, VolumeState
from apps.tenants.models import TenantStatus
from apps.tenants.roles import Role
from tests.console.helpers import client_for, make_instance, page
from tests.console.html_tree import parse
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_actor: Callable[..., Any], catalog: Any) -> Any:
    return make_actor(Role.OWNER, tenant=TenantFactory(name="Acme Research", slug="acme"))


def _volume(actor: Any, name: str = "datasets", size_gib: int = 100, region: str = "us-east-1") -> Volume:
    """Created through the service; the reconcile queued on commit never runs here, so it stays creating
    until a test says otherwise."""
    return storage_services.volume_create(
        actor=actor.user, tenant=actor.tenant, name=name, size_gib=size_gib, region=region
    )


def _settle(volume: Volume, state: str = VolumeState.AVAILABLE) -> Volume:
    Volume.objects.filter(pk=volume.pk).update(state=state)
    volume.refresh_from_db()
    return volume


def _attach(volume: Volume, instance: Instance, mount_path: str = "/mnt/datasets") -> VolumeAttachment:
    _settle(volume, VolumeState.IN_USE)
    return VolumeAttachment.objects.create(instance=instance, volume=volume, mount_path=mount_path)


# --- the list ------------------------------------------------------------------------------------------


def test_the_list_shows_each_volume_with_its_figures(owner: Any) -> None:
    attached = _volume(owner, "datasets", 100)
    trainer = make_instance(owner.tenant, created_by=owner.user, name="trainer")
    _attach(attached, trainer, "/mnt/datasets")
    _settle(_volume(owner, "scratch", 20, region="eu-west-1"))

    response = client_for(owner.user).get(page("volumes", owner.tenant))

    assert response.status_code == 200
    root = parse(response.content.decode())
    rows = {row.attrs["data-volume"]: row.text for row in root.walk() if "data-volume" in row.attrs}
    datasets, scratch = rows[str(attached.pk)], next(t for k, t in rows.items() if k != str(attached.pk))
    for expected in (
        "datasets",
        "us-east-1",
        "100 GiB",
        "sandbox-standard",
        "one instance at a time",
        "In use",
    ):
        assert expected in datasets, expected
    assert "trainer at /mnt/datasets" in datasets
    assert "$0.02/h" in datasets  # 100 GiB x $0.0002 per GiB-hour
    assert "eu-west-1" in scratch and "20 GiB" in scratch and "Available" in scratch and "$0.004/h" in scratch
    html = response.content.decode()
    assert page("instance_detail", owner.tenant, trainer.pk) in html
    assert 'id="volume-name"' in html  # the create form


def test_deleted_volumes_are_not_listed(owner: Any) -> None:
    _settle(_volume(owner, "old"), VolumeState.DELETED)
    html = client_for(owner.user).get(page("volumes", owner.tenant)).content.decode()
    assert "No volumes yet." in html and ">old<" not in html


def test_the_list_polls_while_a_volume_is_changing_and_stops_once_settled(owner: Any) -> None:
    volume = _volume(owner)
    client = client_for(owner.user)

    root = parse(client.get(page("volumes", owner.tenant)).content.decode())
    table = root.by_id("volume-table")
    assert table.attrs["hx-trigger"] == "every 2s"
    assert [a for a in table.ancestors() if a.attrs.get("aria-live") == "polite"]
    poll_url = table.attrs["hx-get"]

    assert client.get(poll_url, headers={"HX-Request": "true"}).status_code == 204  # nothing changed
    _settle(volume)
    changed = client.get(poll_url, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    fragment = changed.content.decode()
    assert "<html" not in fragment and "Available" in fragment
    assert "hx-trigger" not in fragment  # settled: polling stops


# --- create --------------------------------------------------------------------------------------------


def test_creating_a_volume(owner: Any) -> None:
    client = client_for(owner.user)

    response = client.post(
        page("volumes", owner.tenant), {"name": "datasets", "region": "eu-west-1", "size_gib": "250"}
    )

    volume = Volume.objects.get(tenant=owner.tenant)
    assert response.status_code == 302
    assert response.url == page("volume_detail", owner.tenant, volume.pk)
    assert (volume.name, volume.region.slug, volume.size_gib, volume.storage_class) == (
        "datasets",
        "eu-west-1",
        250,
        "sandbox-standard",
    )
    assert AuditEvent.objects.get(action="volume.create", tenant=owner.tenant).via == "console"
    detail = client.get(response.url).content.decode()
    assert "Creating the volume datasets (250 GiB)." in detail
    timeline = parse(detail).by_id("volume-status")
    assert "created" in timeline.text and timeline.attrs["hx-trigger"] == "every 2s"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "Not Valid!"}, "name", "lowercase"),
        ({"name": ""}, "name", "This field may not be blank."),
        ({"size_gib": "0"}, "size_gib", "greater than or equal to 1"),
        ({"size_gib": "lots"}, "size_gib", "A valid integer is required."),
        ({"size_gib": "70000"}, "size_gib", "less than or equal to 65536"),
        ({"region": "mars-1"}, "region", "Unknown region 'mars-1'."),
    ],
)
def test_bad_input_is_refused_on_its_field(
    owner: Any, form: dict[str, str], field: str, message: str
) -> None:
    data = {"name": "datasets", "region": "us-east-1", "size_gib": "10", **form}

    response = client_for(owner.user).post(page("volumes", owner.tenant), data)

    assert response.status_code == 400
    assert any(message in m for m in response.context["field_errors"][field]), response.context[
        "field_errors"
    ]
    html = response.content.decode()
    assert 'aria-invalid="true"' in html
    assert not Volume.objects.exists()


def test_a_taken_name_is_refused_on_the_name_field(owner: Any) -> None:
    _volume(owner, "datasets")
    response = client_for(owner.user).post(
        page("volumes", owner.tenant), {"name": "datasets", "region": "us-east-1", "size_gib": "10"}
    )
    assert response.status_code == 400
    assert "already exists in region us-east-1" in " ".join(response.context["field_errors"]["name"])


def test_the_quota_refusal_is_shown(owner: Any) -> None:
    quota = quota_for(owner.tenant)
    quota.max_volume_gib = 100
    quota.save()
    _volume(owner, "first", 80)

    response = client_for(owner.user).post(
        page("volumes", owner.tenant), {"name": "second", "region": "us-east-1", "size_gib": "30"}
    )

    assert response.status_code == 409
    error = parse(response.content.decode()).by_id("form-error")
    assert "volume storage (GiB)" in error.text and "100" in error.text
    assert list(Volume.objects.values_list("name", flat=True)) == ["first"]


def test_a_tenant_without_funds_is_refused(make_actor: Callable[..., Any], catalog: Any) -> None:
    broke = make_actor(Role.OWNER, tenant=TenantFactory(credit=0))
    response = client_for(broke.user).post(
        page("volumes", broke.tenant), {"name": "datasets", "region": "us-east-1", "size_gib": "10"}
    )
    assert response.status_code == 402
    assert "prepaid balance is used up" in response.content.decode()
    assert not Volume.objects.exists()


# --- one volume ----------------------------------------------------------------------------------------


def test_the_volume_page_shows_its_timeline_and_attachment(owner: Any) -> None:
    volume = _volume(owner)
    trainer = make_instance(owner.tenant, created_by=owner.user, name="trainer")
    storage_services.attach_at_launch(instance=trainer, pairs=[(str(volume.pk), "/data")], actor=owner.user)

    response = client_for(owner.user).get(page("volume_detail", owner.tenant, volume.pk))

    assert response.status_code == 200
    status = parse(response.content.decode()).by_id("volume-status")
    assert "trainer (running) at /data" in status.text
    assert "created" in status.text and "attached" in status.text
    assert f"by {owner.user.email}" in status.text


def test_growing_a_volume(owner: Any) -> None:
    volume = _settle(_volume(owner, size_gib=100))
    client = client_for(owner.user)

    response = client.post(page("volume_resize", owner.tenant, volume.pk), {"size_gib": "150"})

    assert response.status_code == 302
    volume.refresh_from_db()
    assert (volume.size_gib, volume.state) == (150, VolumeState.RESIZING)
    html = client.get(response.url).content.decode()
    assert "Growing datasets to 150 GiB." in html
    assert "resized" in parse(html).by_id("volume-status").text


@pytest.mark.parametrize(
    ("size", "message"),
    [("50", "Volumes only grow: the current size is 100 GiB."), ("x", "A valid integer is required.")],
)
def test_shrinking_is_refused_on_the_size_field(owner: Any, size: str, message: str) -> None:
    volume = _settle(_volume(owner, size_gib=100))

    response = client_for(owner.user).post(page("volume_resize", owner.tenant, volume.pk), {"size_gib": size})

    assert response.status_code == 400
    html = response.content.decode()
    error = parse(html).by_id("resize-size-error")
    assert message in error.text
    assert parse(html).by_id("resize-size").attrs["aria-invalid"] == "true"
    volume.refresh_from_db()
    assert volume.size_gib == 100


def test_renaming_a_volume(owner: Any) -> None:
    volume = _volume(owner)
    client = client_for(owner.user)

    bad = client.post(page("volume_rename", owner.tenant, volume.pk), {"name": "Bad Name"})
    assert bad.status_code == 400
    assert "rename-name-error" in bad.content.decode()

    good = client.post(page("volume_rename", owner.tenant, volume.pk), {"name": "checkpoints"})
    assert good.status_code == 302
    assert Volume.objects.get(pk=volume.pk).name == "checkpoints"


def test_deleting_an_attached_volume_is_refused_on_the_page(owner: Any) -> None:
    volume = _volume(owner)
    trainer = make_instance(owner.tenant, created_by=owner.user, name="trainer")
    _attach(volume, trainer)
    client = client_for(owner.user)
    url = page("volume_delete", owner.tenant, volume.pk)

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Yes, delete datasets" in confirm.content.decode()

    refused = client.post(url)
    assert refused.status_code == 409
    html = refused.content.decode()
    assert "attached to an instance that is not terminated" in parse(html).by_id("form-error").text
    assert page("instance_detail", owner.tenant, trainer.pk) in html
    assert Volume.objects.get(pk=volume.pk).state == VolumeState.IN_USE


def test_deleting_a_detached_volume(owner: Any) -> None:
    volume = _settle(_volume(owner))
    client = client_for(owner.user)

    response = client.post(page("volume_delete", owner.tenant, volume.pk))

    assert response.status_code == 302 and response.url == page("volumes", owner.tenant)
    assert Volume.objects.get(pk=volume.pk).state == VolumeState.DELETING
    assert "Deleting the volume datasets." in client.get(response.url).content.decode()
    # Once deleting, the volume page offers no more changes.
    detail = client.get(page("volume_detail", owner.tenant, volume.pk)).content.decode()
    assert 'id="resize-size"' not in detail and "Deleting" in detail


# --- who may do what ------------------------------------------------------------------------------------


def test_a_viewer_reads_but_cannot_change(make_actor: Callable[..., Any], owner: Any) -> None:
    volume = _settle(_volume(owner))
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    client = client_for(viewer.user)

    listing = client.get(page("volumes", owner.tenant))
    assert listing.status_code == 200 and "datasets" in listing.content.decode()
    assert 'id="volume-name"' not in listing.content.decode()
    detail = client.get(page("volume_detail", owner.tenant, volume.pk)).content.decode()
    assert "datasets" in detail and 'id="resize-size"' not in detail
    assert page("volume_delete", owner.tenant, volume.pk) not in detail

    writes = [
        (page("volumes", owner.tenant), {"name": "x", "region": "us-east-1", "size_gib": "1"}),
        (page("volume_resize", owner.tenant, volume.pk), {"size_gib": "200"}),
        (page("volume_rename", owner.tenant, volume.pk), {"name": "renamed"}),
        (page("volume_delete", owner.tenant, volume.pk), {}),
    ]
    for url, data in writes:
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "storage.write" in response.content.decode()
    assert client.get(page("volume_delete", owner.tenant, volume.pk)).status_code == 403
    volume.refresh_from_db()
    assert (volume.name, volume.size_gib, volume.state) == ("datasets", 100, VolumeState.AVAILABLE)
    assert Volume.objects.count() == 1


def test_the_navigation_shows_storage_only_to_roles_that_read_it(
    make_actor: Callable[..., Any], owner: Any
) -> None:
    viewer = make_actor(Role.VIEWER, tenant=owner.tenant)
    billing = make_actor(Role.BILLING, tenant=owner.tenant)

    nav = parse(client_for(viewer.user).get(page("dashboard", owner.tenant)).content.decode())
    links = [a.text for a in nav.walk() if a.tag == "a" and any(p.tag == "nav" for p in a.ancestors())]
    assert "Volumes" in links and "Object storage" in links

    client = client_for(billing.user)
    html = client.get(page("dashboard", owner.tenant)).content.decode()
    assert page("volumes", owner.tenant) not in html and page("buckets", owner.tenant) not in html
    assert client.get(page("volumes", owner.tenant)).status_code == 403


def test_another_tenants_volume_is_404(make_actor: Callable[..., Any], owner: Any) -> None:
    volume = _volume(owner, "secret-data")
    stranger = make_actor(Role.OWNER)
    client = client_for(stranger.user)
    reads = ("volume_detail", "volume_status", "volume_delete")
    writes = ("volume_resize", "volume_rename", "volume_delete")
    for tenant in (owner.tenant, stranger.tenant):
        for url in [page(name, tenant, volume.pk) for name in reads] + [page("volumes", owner.tenant)]:
            response = client.get(url)
            assert response.status_code == 404, url
            html = response.content.decode()
            assert "secret-data" not in html and "Acme Research" not in html
        for url in [page(name, tenant, volume.pk) for name in writes] + [page("volumes", owner.tenant)]:
            assert client.post(url, {"size_gib": "500", "name": "mine"}).status_code == 404, url
    volume.refresh_from_db()
    assert (volume.name, volume.size_gib, volume.state) == ("secret-data", 100, VolumeState.CREATING)


# --- launch, the instance page, terminate ---------------------------------------------------------------


def test_the_launch_page_lists_the_volumes_of_the_chosen_region(owner: Any) -> None:
    datasets = _settle(_volume(owner, "datasets"))
    eu = _settle(_volume(owner, "eu-data", region="eu-west-1"))
    held = _volume(owner, "held")
    _attach(held, make_instance(owner.tenant, created_by=owner.user, name="holder"))
    _settle(_volume(owner, "gone"), VolumeState.DELETING)
    client = client_for(owner.user)

    html = client.get(page("launch", owner.tenant)).content.decode()
    root = parse(html)
    assert root.by_id(f"vol-{datasets.pk}").attrs.get("value") == str(datasets.pk)
    assert root.by_id(f"mount-{datasets.pk}").attrs["value"] == "/mnt/datasets"
    assert "disabled" in root.by_id(f"vol-{held.pk}").attrs  # ReadWriteOnce, held by another instance
    assert "In use by holder" in root.by_id(f"vol-{held.pk}-held").text
    assert "eu-data" not in html and ">gone<" not in html

    # Changing the region reloads the volumes with the rest of the region's options.
    options = client.get(page("launch_options", owner.tenant), {"region": "eu-west-1"})
    fragment = options.content.decode()
    assert f'id="vol-{eu.pk}"' in fragment and f'id="vol-{datasets.pk}"' not in fragment


def test_launching_with_a_volume_attaches_it(owner: Any) -> None:
    volume = _settle(_volume(owner, "datasets"))
    client = client_for(owner.user)

    with TestCase.captureOnCommitCallbacks(execute=False):
        response = client.post(
            page("launch", owner.tenant),
            {
                "region": "us-east-1",
                "instance_type": "cpu-4x",
                "image": "pytorch",
                "name": "trainer",
                "volume_ids": [str(volume.pk)],
                f"mount_path_{volume.pk}": "/mnt/datasets",
            },
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    instance = Instance.objects.get(tenant=owner.tenant, name="trainer")
    attachment = VolumeAttachment.objects.get(instance=instance)
    assert (attachment.volume_id, attachment.mount_path) == (volume.pk, "/mnt/datasets")
    assert Volume.objects.get(pk=volume.pk).state == VolumeState.IN_USE

    detail = client.get(page("instance_detail", owner.tenant, instance.pk)).content.decode()
    section = parse(detail).by_id("volumes-h").parent
    assert "datasets" in section.text and "/mnt/datasets" in section.text and "In use" in section.text
    assert page("volume_detail", owner.tenant, volume.pk) in detail


def test_a_bad_mount_path_is_refused_on_the_volumes_field(owner: Any) -> None:
    volume = _settle(_volume(owner, "datasets"))
    response = client_for(owner.user).post(
        page("launch", owner.tenant),
        {
            "region": "us-east-1",
            "instance_type": "cpu-4x",
            "image": "pytorch",
            "volume_ids": [str(volume.pk)],
            f"mount_path_{volume.pk}": "/etc/data",
        },
    )
    assert response.status_code == 400
    assert "/etc is a system directory" in " ".join(response.context["field_errors"]["volumes"])
    root = parse(response.content.decode())
    assert "checked" in root.by_id(f"vol-{volume.pk}").attrs
    assert root.by_id(f"mount-{volume.pk}").attrs["value"] == "/etc/data"  # kept to correct it
    assert not Instance.objects.exists()


@pytest.mark.parametrize(("ticked", "deleted"), [(False, False), (True, True)])
def test_terminate_asks_whether_the_volumes_go_too(owner: Any, ticked: bool, deleted: bool) -> None:
    volume = _volume(owner, "datasets")
    trainer = make_instance(owner.tenant, created_by=owner.user, name="trainer")
    _attach(volume, trainer)
    client = client_for(owner.user)
    url = page("instance_action", owner.tenant, trainer.pk, "terminate")

    confirm = parse(client.get(url).content.decode())
    box = next(n for n in confirm.walk() if n.tag == "input" and n.attrs.get("name") == "delete_volumes")
    assert "checked" not in box.attrs  # keep is the default
    assert "Also delete the attached volumes" in box.parent.text
    assert "datasets" in confirm.text

    with TestCase.captureOnCommitCallbacks(execute=False):
        response = client.post(url, {"delete_volumes": "on"} if ticked else {})

    assert response.status_code == 302
    assert VolumeAttachment.objects.get(pk__isnull=False).delete_with_instance is deleted
    assert Instance.objects.get(pk=trainer.pk).desired_state == "terminated"


def test_a_suspended_tenant_deletes_but_does_not_create_or_grow(
    make_actor: Callable[..., Any], catalog: Any
) -> None:
    owner = make_actor(
        Role.OWNER, tenant=TenantFactory(status=TenantStatus.SUSPENDED, status_reason="Unpaid")
    )
    volume = _settle(_volume(owner))
    client = client_for(owner.user)

    created = client.post(
        page("volumes", owner.tenant), {"name": "more", "region": "us-east-1", "size_gib": "1"}
    )
    assert created.status_code == 403 and "suspended" in created.content.decode()
    assert client.post(page("volume_resize", owner.tenant, volume.pk), {"size_gib": "500"}).status_code == 403
    assert client.post(page("volume_delete", owner.tenant, volume.pk)).status_code == 302
    assert list(Volume.objects.values_list("name", "size_gib", "state")) == [
        ("datasets", 100, VolumeState.DELETING)
    ]
