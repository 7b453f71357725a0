"""Storage in the browser, nothing mocked: a volume created in the console is bound on the sandbox cluster
(the in-process operator and the sandbox's simulated provisioner) while its page watches, an instance is
launched with it attached and the volume shows in use; then a bucket and an access key are created on the
real SeaweedFS, the key's secret shown once."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from apps.instances.models import Instance
from apps.storage.models import Volume, VolumeAttachment
from apps.storage.objects.models import AccessKey, Bucket
from tests.browser.conftest import CLUSTER_TIMEOUT_MS, Console, log_in, owner_with_tenant, shoot, sidenav
from tests.storage.objects import conftest as s3_fixtures

# The real S3 server's fixtures (settings pointed at it; what the test made is removed after it).
s3_server = s3_fixtures.s3_server
object_storage = s3_fixtures.object_storage


def test_volume_attached_at_launch_then_a_bucket_and_an_access_key(
    console: Console, page: Page, object_storage: dict[str, Any]
) -> None:
    owner, tenant = owner_with_tenant("Franklin Datasets", "rosalind@example.com")
    console.grant_credit(tenant)
    console.start_operator()
    log_in(page, owner.email)

    # A volume, created in the console; its page shows it becoming available without a reload.
    sidenav(page, tenant, "Volumes")
    expect(page.get_by_role("heading", name="Volumes", exact=True)).to_be_visible()
    expect(page.get_by_text("No volumes yet.")).to_be_visible()
    page.get_by_label("Name").fill("datasets")
    page.get_by_label("Region").select_option("us-east-1")
    page.get_by_label("Size (GiB)").fill("10")
    page.get_by_role("button", name="Create volume").click()
    expect(page.get_by_role("heading", name="datasets", exact=True)).to_be_visible()
    expect(page.get_by_text("Creating the volume datasets (10 GiB).")).to_be_visible()
    page.evaluate("window.sameDocument = true")
    status = page.get_by_role("region", name="Status")
    expect(status.get_by_text("Available", exact=True)).to_be_visible(timeout=CLUSTER_TIMEOUT_MS)
    assert page.evaluate("window.sameDocument === true"), "the page was reloaded"
    expect(page.get_by_role("region", name="Timeline")).to_contain_text("bound")
    shoot(page, "volume-detail")
    volume = Volume.objects.get(tenant=tenant, name="datasets")

    # Launch with it attached at its default mount path.
    # us-east-1 is the default region; choosing it again would reload the options (HTMX) under our clicks.
    sidenav(page, tenant, "Launch")
    expect(page.get_by_label("Region")).to_have_value("us-east-1")
    volumes = page.get_by_role("group", name="Volumes in us-east-1")
    page.get_by_role("radio", name=re.compile(r"cpu-4x$")).check()
    page.get_by_label("Image", exact=True).select_option("pytorch")
    volumes.get_by_role("checkbox", name="datasets").check()
    expect(volumes.get_by_label("Mount path of datasets")).to_have_value("/mnt/datasets")
    page.get_by_label(re.compile(r"^Name")).fill("trainer")
    shoot(page, "launch-with-volume")
    page.get_by_role("button", name="Launch", exact=True).click()

    expect(page.get_by_role("heading", name="trainer", exact=True)).to_be_visible()
    attached = page.get_by_role("region", name="Volumes")
    expect(attached).to_contain_text("/mnt/datasets")
    expect(page.get_by_role("region", name="Status").get_by_text("running", exact=True)).to_be_visible(
        timeout=CLUSTER_TIMEOUT_MS
    )
    instance = Instance.objects.get(tenant=tenant, name="trainer")
    assert instance.instance_type.slug == "cpu-4x"
    assert VolumeAttachment.objects.get(instance=instance).volume_id == volume.pk

    # The volume is in use by the instance, in the list.
    sidenav(page, tenant, "Volumes")
    row = page.get_by_role("row", name=re.compile("datasets"))
    expect(row).to_contain_text("In use")
    expect(row).to_contain_text("trainer at /mnt/datasets")
    expect(row).to_contain_text("one instance at a time")
    expect(row.get_by_role("link", name="trainer")).to_have_attribute(
        "href", f"/t/{tenant.slug}/instances/{instance.pk}/"
    )
    shoot(page, "volumes", docs=True)

    # Object storage: a bucket, then an access key whose secret is shown once.
    sidenav(page, tenant, "Object storage")
    expect(page.get_by_role("heading", name="Object storage", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("checkpoints")
    page.get_by_role("button", name="Create bucket").click()
    expect(page.get_by_role("heading", name="checkpoints", exact=True)).to_be_visible()
    bucket = Bucket.objects.get(tenant=tenant, name="checkpoints")
    expect(page.get_by_text(f"Created the bucket checkpoints ({bucket.physical_name}).")).to_be_visible()
    sidenav(page, tenant, "Object storage")
    expect(page.get_by_role("row", name=re.compile("checkpoints"))).to_contain_text(bucket.physical_name)
    shoot(page, "buckets")

    page.get_by_role("navigation", name="Object storage").get_by_role("link", name="Access keys").click()
    page.get_by_label("Name").fill("training")
    page.get_by_role("button", name="Create access key").click()
    expect(page.get_by_role("heading", name=re.compile("Access key .training. created"))).to_be_visible()
    key = AccessKey.objects.get(tenant=tenant, name="training")
    expect(page.locator("#access-key-id")).to_have_text(key.access_key_id)
    secret = page.locator("#secret-access-key").inner_text().strip()
    assert len(secret) >= 20
    expect(page.locator("#aws-example")).to_contain_text(f"s3 ls s3://{bucket.physical_name}/")
    shoot(page, "access-key-created")

    page.get_by_role("link", name="Back to access keys").click()
    expect(page.get_by_role("row", name=re.compile("training"))).to_contain_text(key.access_key_id)
    assert secret not in page.content()
